//! The one integration-test binary (one link of the crate, however many suites): each module
//! is a suite.

/// The `spotswap` binary, run as users run it.
mod cli;
/// The docs match the code, and the decision core stays pure.
mod docs;
/// Golden scenarios: a snapshot in, a plan out, compared with a reviewed expected plan.
mod golden;
/// Every setting changes what the planner or the compatibility checks decide.
mod settings_behaviour;
