//! The engine: decides where units run.
//!
//! - [`plan`]: reconcile as a pure function from a [`ClusterSnapshot`] to ordered [`Task`]s.

mod plan;
mod snapshot;

#[cfg(test)]
mod plan_tests;

pub use plan::{Plan, Rejection, Task, Unplaceable, UnplaceableReason, UnscheduleReason, plan};
pub use snapshot::{ClusterSnapshot, MachineSnapshot, UnitSnapshot};
