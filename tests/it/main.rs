//! The one integration-test binary (one link of the crate, however many suites): each module
//! is a suite.

/// The `spotswap` binary, run as users run it.
mod cli;
/// The docs match the code, and the decision core stays pure.
mod docs;
/// End to end: the real pass and CLI, through the AWS SDK, against the local emulator.
mod e2e;
/// The local AWS emulator (moto plus realistic prices) works through the real AWS SDK.
mod emulator;
/// Golden scenarios: a snapshot in, a plan out, compared with a reviewed expected plan.
mod golden;
/// The local AWS emulator harness and its seeders, shared by the end-to-end suites.
mod moto;
/// Component tests: the real pass over the in-memory cloud.
mod pass_memory;
/// Every setting changes what the planner or the compatibility checks decide.
mod settings_behaviour;
