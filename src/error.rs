//! The crate's error type: why a command, a pass or an invocation could not run at all.
//!
//! Failures inside a pass (a region that cannot be read, an action that fails) are not errors:
//! they are reported as outcomes and never stop the rest. What is here stops the whole thing,
//! and its message is one or two lines a person can act on, never a dump of SDK internals.

use crate::cloud::CloudError;
use crate::events::EventError;
use crate::settings::InvalidSetting;

/// Why something could not run.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    /// Settings (flags, environment variables) with unusable values, every one of them.
    #[error("{}", settings_message(.0))]
    Settings(Vec<InvalidSetting>),
    /// A value that cannot be parsed, with what was expected.
    #[error("{0}")]
    Invalid(String),
    /// An event the function does not handle, or a malformed one: nothing was touched.
    #[error(transparent)]
    Event(#[from] EventError),
    /// The account's regions could not be listed, so no pass could start.
    #[error("cannot list the account's regions: {0}")]
    Regions(CloudError),
    /// The caller's AWS credentials cannot be loaded; the text says why, in one line.
    #[error(
        "{0}: set AWS_PROFILE or --profile, run `aws sso login`, or export \
         AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
    )]
    Credentials(String),
    /// No AWS region is configured to start from.
    #[error(
        "no AWS region is configured: set AWS_REGION (or a region in your profile); \
         spotswap lists the account's regions from there"
    )]
    NoRegion,
    /// Reading or parsing an input file.
    #[error("{path}: {problem}")]
    Input { path: String, problem: String },
    /// The operating system refused something the process needs (the async runtime).
    #[error("{0}")]
    System(String),
}

impl Error {
    /// A stable name for the kind of failure (the Lambda's `errorType`).
    pub fn kind(&self) -> &'static str {
        match self {
            Error::Settings(_) => "InvalidSettings",
            Error::Invalid(_) => "InvalidValue",
            Error::Event(EventError::Unsupported { .. }) => "UnsupportedEvent",
            Error::Event(_) => "MalformedEvent",
            Error::Regions(_) => "PassFailed",
            Error::Credentials(_) => "Credentials",
            Error::NoRegion => "NoRegion",
            Error::Input { .. } => "InvalidInput",
            Error::System(_) => "SystemError",
        }
    }
}

fn settings_message(errors: &[InvalidSetting]) -> String {
    errors
        .iter()
        .map(|e| format!("invalid setting: {e}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The crate's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;
