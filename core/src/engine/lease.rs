//! Engine leadership (spec §2.1): who holds `P/lease/engine-leader`, and until when this engine
//! may act on it.

use crate::registry::Node;
use crate::registry::records::LeaseRecord;
use crate::time::Instant;
use std::time::Duration;

/// The engine protocol version this engine speaks (`P/engine/version`, lease `Version`).
pub const ENGINE_VERSION: u32 = 1;

/// This engine's view of the lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Another engine (or nobody) holds it.
    Follower { leader: Option<String> },
    /// We hold it.
    Leader {
        /// The lease key's modification index, for the next renewal (`prevIndex`).
        index: u64,
        /// Past this instant we no longer trust the lease: it is the send time of the last
        /// successful write of the lease plus its TTL minus a safety margin, so we stop acting
        /// before etcd can expire the key and hand it to someone else.
        valid_until: Instant,
        /// After stealing a legacy lease, wait out the old holder's remaining TTL before acting.
        act_after: Instant,
    },
}

impl LeaseState {
    pub fn is_leader(&self) -> bool {
        matches!(self, LeaseState::Leader { .. })
    }
}

/// The lease key as read: holder and version (a non-JSON value is a bare machine ID at version 0,
/// fleet's legacy form), with its index and remaining TTL.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadLease {
    pub holder: String,
    pub version: u32,
    pub index: u64,
    pub remaining: Duration,
}

impl ReadLease {
    pub fn from_node(node: &Node) -> ReadLease {
        let value = node.value.as_deref().unwrap_or("");
        let (holder, version) = match serde_json::from_str::<LeaseRecord>(value) {
            Ok(record) => (record.machine_id, record.version),
            Err(_) => (value.to_string(), 0),
        };
        let remaining =
            Duration::from_secs(node.ttl.and_then(|t| u64::try_from(t).ok()).unwrap_or(0));
        ReadLease {
            holder,
            version,
            index: node.modified_index,
            remaining,
        }
    }
}

/// The lease value this engine writes.
pub fn lease_value(machine_id: &str) -> String {
    let record = LeaseRecord {
        machine_id: machine_id.to_string(),
        version: ENGINE_VERSION,
    };
    serde_json::to_string(&record).unwrap_or_default()
}

/// The cluster engine version in `P/engine/version` (missing or unreadable counts as 0).
pub fn parse_version(value: Option<&str>) -> u32 {
    value
        .map(|v| v.trim().trim_matches('"'))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_values_and_legacy_form() {
        assert_eq!(lease_value("m1"), r#"{"MachineID":"m1","Version":1}"#);
        let node = Node {
            value: Some(lease_value("m2")),
            modified_index: 9,
            ttl: Some(4),
            ..Node::default()
        };
        let read = ReadLease::from_node(&node);
        assert_eq!(
            (read.holder.as_str(), read.version, read.index),
            ("m2", 1, 9)
        );
        assert_eq!(read.remaining, Duration::from_secs(4));
        let legacy = Node {
            value: Some("oldmachine".into()),
            ..Node::default()
        };
        let read = ReadLease::from_node(&legacy);
        assert_eq!((read.holder.as_str(), read.version), ("oldmachine", 0));
        assert_eq!(parse_version(Some("1")), 1);
        assert_eq!(parse_version(Some("\"2\"")), 2);
        assert_eq!(parse_version(None), 0);
        assert_eq!(parse_version(Some("x")), 0);
    }
}
