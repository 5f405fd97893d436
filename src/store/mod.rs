//! The state directory that every process shares: one record per frozen
//! superblock, its lock, and the one rule that says whether a recorded
//! freeze is still alive.

pub(crate) mod liveness;
pub(crate) mod record;
pub(crate) mod state_dir;
