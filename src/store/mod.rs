//! The state directory that every process shares: one record per frozen
//! superblock, its lock, and the one rule that says whether a recorded
//! freeze is still alive.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod seen_records; // records read, remembered until the directory changes
pub(crate) mod foreign_notes; // what the guard saw of another tool's freezes
pub(crate) mod state_dir; // the directory, its records and locks
pub(crate) mod liveness; // the one rule: is a recorded freeze alive
pub(crate) mod record; // one freeze's record, and how it reads and writes
pub(crate) mod hold_notes; // the hold hooks a record lists
