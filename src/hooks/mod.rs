//! Freeze and thaw hooks: the executables of `/etc/freezefs/hooks.d/` that
//! tell an application (a database, a mail queue) to quiesce before a freeze
//! and to resume after it, so that a snapshot is application-consistent.
//!
//! Only the holder runs them, for every freeze made through freezefs: its
//! children are its own (never the caller's, whose `waitpid(-1)` would
//! reap them), its environment is clean, and it outlives the caller, so
//! that a freeze's thaw hooks run however the freeze ends:
//!
//! - freeze hooks, `HOOK freeze MOUNTPOINT`, in lexical order, at the
//!   client's request before its flush ([`run_freeze`]); one that fails or
//!   outlives the time limit aborts the freeze, after the thaw hooks of
//!   those that ran (reason `rolled-back`);
//! - thaw hooks, `HOOK thaw MOUNTPOINT`, in reverse order, after the thaw
//!   ([`run_thaw`]): when a freeze the holder keeps ends (thawed, timeout,
//!   freezer-died, other-tool), or at the client's request after a rollback.
//!
//! A hook runs with `FREEZEFS_MOUNT_POINT`, `FREEZEFS_DEVICE`, for a thaw
//! `FREEZEFS_THAW_REASON`, and `PATH`, nothing else; stdin is `/dev/null`;
//! its output (the first 2 KiB) goes into its event, one per run, with its
//! exit status and duration. A failed thaw hook is logged, never retried.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod running; // running them, with a time limit, and their events
pub(crate) mod wire; // hooks and their targets as the holder's requests carry them
pub(crate) mod finding; // the hook directory and what it holds

pub use finding::{HOOKS_DIR, HOOKS_DIR_ENV};
pub(crate) use finding::{HookTarget, Hooks, find, hooks_dir_path, list};
pub(crate) use running::{run_freeze, run_thaw};
