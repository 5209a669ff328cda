//! The one integration-test binary (one link of the crate, however many suites): each module
//! is a suite.

/// The `spotswap` binary, run as users run it.
mod cli;
/// The CloudFormation templates deploy what the code expects.
mod cloudformation;
/// The docs match the code, and the decision core stays pure.
mod docs;
/// No clone from a stale spec, over the in-memory cloud.
mod drift;
/// End to end: the real pass and CLI, through the AWS SDK, against the local emulator.
mod e2e;
/// The local AWS emulator (moto plus realistic prices) works through the real AWS SDK.
mod emulator;
/// Golden scenarios: a snapshot in, a plan out, compared with a reviewed expected plan.
mod golden;
/// Every write request the AWS adapter builds, held against the stack's role.
mod iam;
/// Interruption handling over the in-memory cloud.
mod interrupt_memory;
/// The spotswap-lambda binary, run through the runtime API emulator with the AWS emulator behind.
mod lambda;
/// The local AWS emulator harness and its seeders, shared by the end-to-end suites.
mod moto;
/// Component tests: the real pass over the in-memory cloud.
mod pass_memory;
// Placement groups and tenancy kept on every launch path.
mod placement;
/// The preflight over the in-memory cloud, with writes refused as IAM refuses them.
mod preflight;
/// The readiness gate over the in-memory cloud's target-group health checks.
mod readiness;
/// A local implementation of the Lambda runtime API, for running the function binary.
mod runtime_api;
/// Every setting changes what the planner or the compatibility checks decide.
mod settings_behaviour;
/// The operator's stop mid-pass over the in-memory cloud.
mod stop;
