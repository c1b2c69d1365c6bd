//! The agent: makes the local systemd do what the schedule says, and reports back.
