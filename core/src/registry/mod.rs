//! The registry: flt's view of etcd, as pure data.
//!
//! - [`Keyspace`]: where everything lives (see `Documentation/architecture.md`).
//! - [`records`]: the JSON and plain-text values stored under those keys; [`codec`] encodes and
//!   decodes them ([`Record`]).
//! - [`PrefixFollower`]: read a prefix once, then follow it by watch from the read's index, with
//!   a slow jittered resync; the way agents and the engine keep up without re-listing.
//! - [`Request`], [`Reply`], [`Failure`]: backend-neutral operations. The core emits requests
//!   tagged with an [`OpId`]; a driver (etcd v2 over HTTP today, perhaps the etcd v3 JSON gateway
//!   later) carries them out and feeds the outcome back as a [`Response`] with the same id. The
//!   core never sees HTTP.

pub mod codec;
pub mod follow;
mod keys;
pub mod records;
pub mod view;

pub use codec::{DecodeError, DecodeErrorKind, Record};
pub use follow::{FollowConfig, FollowEvent, FollowTimer, PrefixFollower};
pub use keys::{KeyKind, Keyspace};

use std::time::Duration;

/// Identifies one request and, later, its answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct OpId(pub u64);

/// Hands out [`OpId`]s for one component. The component number fills the top byte, so that the
/// ids of an engine, an agent and an API front end living in one node never collide.
#[derive(Clone, Debug)]
pub struct OpIdGen {
    component: u64,
    next: u64,
}

impl OpIdGen {
    pub fn new(component: u8) -> OpIdGen {
        OpIdGen {
            component: u64::from(component) << 56,
            next: 0,
        }
    }

    pub fn next_id(&mut self) -> OpId {
        self.next = (self.next + 1) & ((1 << 56) - 1);
        OpId(self.component | self.next)
    }

    /// Whether `id` was handed out by a generator of this component.
    pub fn owns(&self, id: OpId) -> bool {
        id.0 >> 56 == self.component >> 56
    }
}

/// What must hold for a write or delete to take effect.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Precondition {
    /// Unconditional.
    #[default]
    None,
    /// Create only: the key must not exist.
    Absent,
    /// Update only: the key must exist.
    Present,
    /// The key's last modification index must be this one.
    Index(u64),
    /// The key's current value must be this one.
    Value(String),
}

/// What a `Put` writes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PutValue {
    /// A plain value.
    Value(String),
    /// A directory (with a TTL, it takes its children with it when it expires).
    Directory,
    /// Only reset the TTL of an existing key or directory, without waking watchers.
    RefreshTtl,
}

/// One operation on the registry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read a key, or a directory with (if `recursive`) everything below it, sorted by key.
    Get { key: String, recursive: bool },
    /// Write a key or directory, optionally with a time to live and a precondition.
    Put {
        key: String,
        value: PutValue,
        ttl: Option<Duration>,
        precondition: Precondition,
    },
    /// Delete a key, or (if `recursive`) a directory and everything below it.
    Delete {
        key: String,
        precondition: Precondition,
        recursive: bool,
    },
    /// Stream every change under `prefix` with an index ≥ `from_index` (0: from the next
    /// change on). Answered by any number of [`Reply::Event`]s in index order, and ended only by
    /// a [`Failure`] (or when the core stops it). To follow a prefix without gaps: `Get` it,
    /// then watch from the read's `index + 1`; after [`Failure::HistoryLost`], do that again.
    Watch { prefix: String, from_index: u64 },
}

/// A key or directory as read from the registry.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Node {
    /// The full key, e.g. `/_coreos.com/flt/job/hello.service/object`.
    pub key: String,
    /// The value; `None` for a directory.
    pub value: Option<String>,
    /// True for a directory.
    pub dir: bool,
    /// The index at which the key was last modified.
    pub modified_index: u64,
    /// The index at which the key was created.
    pub created_index: u64,
    /// The seconds left to live, if the key has a TTL.
    pub ttl: Option<i64>,
    /// Children, sorted by key (only for a directory read recursively, or one level otherwise).
    pub nodes: Vec<Node>,
}

impl Node {
    /// The last path segment of the key.
    pub fn basename(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or("")
    }

    /// This node and everything below it, depth first, in key order.
    pub fn walk(&self) -> impl Iterator<Item = &Node> {
        let mut stack = vec![self];
        std::iter::from_fn(move || {
            let node = stack.pop()?;
            stack.extend(node.nodes.iter().rev());
            Some(node)
        })
    }
}

/// What kind of change a watch event reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Set,
    Create,
    Update,
    CompareAndSwap,
    Delete,
    CompareAndDelete,
    /// The key's TTL ran out.
    Expire,
}

impl Action {
    /// True for actions after which the key no longer exists.
    pub fn is_removal(self) -> bool {
        matches!(
            self,
            Action::Delete | Action::CompareAndDelete | Action::Expire
        )
    }
}

/// One change seen by a watch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    pub action: Action,
    /// The key after the change (for removals: the key, with no value).
    pub node: Node,
    /// The key before the change, when there was one.
    pub prev_node: Option<Node>,
}

/// The successful outcome of a [`Request`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The node read, and the registry's index at the time of the read (watch from `index + 1`).
    Got { node: Node, index: u64 },
    /// The node as written.
    Put { node: Node },
    /// The key was deleted, at this index.
    Deleted { index: u64 },
    /// A change seen by a watch.
    Event(Event),
}

/// Why a request did not succeed. Failures are data: they arrive as inputs, never as panics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// No endpoint could be reached.
    Unreachable(String),
    /// No answer within the request timeout.
    Timeout,
    /// The precondition did not hold (key exists, key missing, index or value differ).
    PreconditionFailed,
    /// The key does not exist.
    NotFound,
    /// The watch asked for changes older than the registry still remembers: re-read, then
    /// watch again from the index of that read plus one.
    HistoryLost { index: u64 },
    /// Any other refusal, with the registry's own words.
    Rejected { code: u32, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(why) => write!(f, "registry unreachable: {why}"),
            Failure::Timeout => f.write_str("registry request timed out"),
            Failure::PreconditionFailed => f.write_str("registry precondition failed"),
            Failure::NotFound => f.write_str("key not found"),
            Failure::HistoryLost { index } => {
                write!(f, "watch history lost (registry index is now {index})")
            }
            Failure::Rejected { code, message } => write!(f, "registry error {code}: {message}"),
        }
    }
}

impl std::error::Error for Failure {}

/// The answer to the request with the same id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub id: OpId,
    pub result: Result<Reply, Failure>,
}
