//! What freezefs's commands share: `freezefs` and `thawfs` (this crate's
//! binaries) and `freezefs-group`. Never linked into libfreezefs.
//!
//! Top down; imports only go down this list:

pub mod guard; // freezefs --guard: the guard in the foreground
pub mod listing; // freezefs -l: the table and the JSON
pub mod run_frozen; // freezefs MOUNT... -- CMD: freeze, run, thaw, tell
pub mod relay; // SIGINT, SIGTERM and SIGHUP passed on to a command
pub mod command; // finding the command to run, and what a failure means
pub mod messages; // the words of the commands: errors, times, JSON
pub mod exit; // the exit statuses every command keeps to
