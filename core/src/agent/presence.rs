//! Machine presence (spec §3.1): `P/machines/<id>/object` with TTL `agent_ttl`.
//!
//! Registration is create-only. If the key exists, it is read: a record with this fltd's identity
//! (same public IP and metadata) is a leftover of its previous run and is taken over; anything
//! else is another host using the same machine ID, which is reported and retried with backoff
//! (fltd decides what to do about it). Once registered, the TTL is refreshed (update-only) by the
//! agent's heartbeat; if the key has vanished, the agent registers again.

use super::backoff::Backoff;
use super::{Event, Io, Owner};
use crate::registry::records::MachineRecord;
use crate::registry::{Failure, OpId, Precondition, PutValue, Reply, Request};
use crate::time::Instant;
use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// Waiting to try registering again.
    Waiting(Instant),
    /// Create-only write in flight.
    Creating(OpId),
    /// Reading the record that blocked the create.
    Inspecting(OpId),
    /// Overwriting our own previous record (precondition: its index).
    Adopting(OpId),
    Registered,
}

#[derive(Debug)]
pub(crate) struct Presence {
    key: String,
    record: MachineRecord,
    value: String,
    ttl: Duration,
    step: Step,
    refresh: Option<OpId>,
    /// When the refresh in flight was sent.
    refresh_sent: Instant,
    /// When the create or adopting write in flight was sent.
    write_sent: Instant,
    /// The send time of the last successful write of the key plus its TTL: etcd cannot have
    /// expired the key before then.
    valid_until: Option<Instant>,
    registered_once: bool,
    backoff: Backoff,
}

/// What a presence response changed, for the agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PresenceChange {
    None,
    /// Just registered (or registered again).
    Registered,
    /// A refresh failed (the heartbeat should retry soon).
    RefreshFailed,
}

impl Presence {
    pub fn new(key: String, record: MachineRecord, ttl: Duration, now: Instant) -> Presence {
        let value = serde_json::to_string(&record).unwrap_or_default();
        Presence {
            key,
            record,
            value,
            ttl,
            step: Step::Waiting(now),
            refresh: None,
            refresh_sent: now,
            write_sent: now,
            valid_until: None,
            registered_once: false,
            backoff: Backoff::new(Duration::from_secs(1), Duration::from_secs(60)),
        }
    }

    pub fn registered(&self) -> bool {
        self.step == Step::Registered
    }

    pub fn registered_once(&self) -> bool {
        self.registered_once
    }

    /// Until when this machine's presence key surely exists (see `valid_until`).
    pub fn valid_until(&self) -> Option<Instant> {
        self.valid_until
    }

    pub fn retry_at(&self) -> Option<Instant> {
        match self.step {
            Step::Waiting(at) => Some(at),
            _ => None,
        }
    }

    pub fn handle_timeout(&mut self, now: Instant, io: &mut Io) {
        if let Step::Waiting(at) = self.step
            && at <= now
        {
            self.create(now, io);
        }
    }

    /// Refreshes the TTL (part of the heartbeat); only while registered.
    pub fn refresh(&mut self, now: Instant, io: &mut Io) {
        if self.step != Step::Registered || self.refresh.is_some() {
            return;
        }
        let request = Request::Put {
            key: self.key.clone(),
            value: PutValue::RefreshTtl,
            ttl: Some(self.ttl),
            precondition: Precondition::Present,
        };
        self.refresh = Some(io.registry(Owner::Presence, request, now));
        self.refresh_sent = now;
    }

    fn create(&mut self, now: Instant, io: &mut Io) {
        let request = Request::Put {
            key: self.key.clone(),
            value: PutValue::Value(self.value.clone()),
            ttl: Some(self.ttl),
            precondition: Precondition::Absent,
        };
        self.step = Step::Creating(io.registry(Owner::Presence, request, now));
        self.write_sent = now;
    }

    fn wait(&mut self, now: Instant, io: &mut Io) {
        let delay = self.backoff.next_delay(&mut io.rng);
        self.step = Step::Waiting(now + delay);
    }

    fn done(&mut self, adopted: bool, io: &mut Io) -> PresenceChange {
        self.valid_until = Some(self.write_sent + self.ttl);
        self.step = Step::Registered;
        self.registered_once = true;
        self.backoff.reset();
        io.event(Event::Registered {
            machine_id: self.record.id.clone(),
            adopted,
        });
        PresenceChange::Registered
    }

    pub fn handle_response(
        &mut self,
        id: OpId,
        result: Result<Reply, Failure>,
        now: Instant,
        io: &mut Io,
    ) -> PresenceChange {
        if self.refresh == Some(id) {
            self.refresh = None;
            return match result {
                Ok(_) => {
                    self.valid_until = Some(self.refresh_sent + self.ttl);
                    PresenceChange::None
                }
                Err(Failure::NotFound | Failure::PreconditionFailed) => {
                    io.event(Event::PresenceLost {
                        machine_id: self.record.id.clone(),
                    });
                    self.create(now, io);
                    PresenceChange::None
                }
                Err(failure) => {
                    io.event(Event::HeartbeatFailed {
                        error: failure.to_string(),
                    });
                    PresenceChange::RefreshFailed
                }
            };
        }
        match self.step {
            Step::Creating(x) if x == id => match result {
                Ok(_) => self.done(false, io),
                Err(Failure::PreconditionFailed) => {
                    let request = Request::Get {
                        key: self.key.clone(),
                        recursive: false,
                    };
                    self.step = Step::Inspecting(io.registry(Owner::Presence, request, now));
                    PresenceChange::None
                }
                Err(failure) => {
                    io.event(Event::RegistrationFailed {
                        error: failure.to_string(),
                    });
                    self.wait(now, io);
                    PresenceChange::None
                }
            },
            Step::Inspecting(x) if x == id => {
                match result {
                    Ok(Reply::Got { node, .. }) => {
                        let existing = node
                            .value
                            .as_deref()
                            .and_then(|v| serde_json::from_str::<MachineRecord>(v).ok());
                        match existing {
                            Some(theirs) if self.same_host(&theirs) => {
                                let request = Request::Put {
                                    key: self.key.clone(),
                                    value: PutValue::Value(self.value.clone()),
                                    ttl: Some(self.ttl),
                                    precondition: Precondition::Index(node.modified_index),
                                };
                                self.step =
                                    Step::Adopting(io.registry(Owner::Presence, request, now));
                                self.write_sent = now;
                                return PresenceChange::None;
                            }
                            Some(theirs) => io.event(Event::DuplicateMachineId {
                                machine_id: self.record.id.clone(),
                                ours: describe(&self.record),
                                theirs: describe(&theirs),
                            }),
                            None => io.event(Event::RegistrationFailed {
                                error: format!(
                                    "unreadable machine record at {}: {:?}",
                                    self.key, node.value
                                ),
                            }),
                        }
                        self.wait(now, io);
                    }
                    // It expired between the create and the read: create again at once.
                    Err(Failure::NotFound) => self.create(now, io),
                    Ok(_) | Err(_) => {
                        let error = match result {
                            Err(f) => f.to_string(),
                            Ok(r) => format!("unexpected reply {r:?}"),
                        };
                        io.event(Event::RegistrationFailed { error });
                        self.wait(now, io);
                    }
                }
                PresenceChange::None
            }
            Step::Adopting(x) if x == id => match result {
                Ok(_) => self.done(true, io),
                Err(failure) => {
                    io.event(Event::RegistrationFailed {
                        error: failure.to_string(),
                    });
                    self.wait(now, io);
                    PresenceChange::None
                }
            },
            _ => PresenceChange::None,
        }
    }

    /// A record left by this same host (a previous run of this fltd).
    fn same_host(&self, theirs: &MachineRecord) -> bool {
        theirs.id == self.record.id
            && theirs.public_ip == self.record.public_ip
            && theirs.metadata == self.record.metadata
    }
}

fn describe(record: &MachineRecord) -> String {
    let metadata: Vec<String> = record
        .metadata
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "PublicIP={:?} Metadata={:?}",
        record.public_ip,
        metadata.join(",")
    )
}
