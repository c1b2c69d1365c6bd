//! The engine: decides where units run.
//!
//! - [`plan`]: reconcile as a pure function from a [`ClusterSnapshot`] to ordered [`Task`]s and
//!   the reasons why some units could not be placed.
//! - [`Engine`]: the sans-IO state machine around it: engine lease, cluster model
//!   ([`crate::registry::view::ClusterView`]), event-driven reconcile, and the registry writes
//!   that carry out a plan.

mod lease;
mod metrics;
mod plan;
mod scheduler;
mod snapshot;

#[cfg(test)]
mod plan_tests;
#[cfg(test)]
mod scheduler_tests;

pub use lease::{ENGINE_VERSION, LeaseState};
pub use metrics::EngineMetrics;
pub use plan::{Plan, Rejection, Task, Unplaceable, UnplaceableReason, UnscheduleReason, plan};
pub use scheduler::{
    Command, ENGINE_COMPONENT, Engine, EngineConfig, EngineEvent, EngineTimer, SHARED_DIRS,
    SharedFollow,
};
pub use snapshot::{ClusterSnapshot, MachineSnapshot, UnitSnapshot};
