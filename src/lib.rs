//! spotswap: swap the on-demand instances of opted-in EC2 Auto Scaling groups for compatible,
//! cheaper spot instances, without rebuilding the groups.
//!
//! A pass is observe -> plan -> execute -> report (ARCHITECTURE.md). This library holds all
//! of it; the binaries only wire configuration, logging and the AWS adapter. The decision core
//! ([`compat`], [`settings`], [`plan`]) is pure: it never touches the network, the clock or a
//! logger, so every rule is tested by tables and the dry run is exactly what a real pass would do.

pub mod cache;
pub mod catalog;
pub mod cloud;
pub mod compat;
mod error;
pub mod events;
pub mod execute;
pub mod glob;
pub mod interrupt;
pub mod lambda;
pub mod lease;
pub mod like;
pub mod model;
pub mod observe;
pub mod pacing;
pub mod pass;
pub mod plan;
pub mod pool_memory;
pub mod preflight;
pub mod price_table;
pub mod pricing;
pub mod protocol;
pub mod report;
pub mod savings;
pub mod schedule;
pub mod settings;

pub use error::{Error, Result};
