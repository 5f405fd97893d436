//! The operations, step by step: FREEZE (one filesystem or several, and its
//! short freeze window), THAW, QUERY and status, reset of a timeout, the
//! RAII guard. [`freezer::Freezer`] lists them all; each lives in its own file.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod freezer; // Freezer: the whole Rust API in one table
pub(crate) mod run_frozen; // run something frozen; did every freeze hold
pub(crate) mod freeze_guard; // a freeze that ends with its guard
pub(crate) mod freeze; // FREEZE, all or nothing, hooks included
pub(crate) mod before_flush; // the hooks a FREEZE asks for first, and their rollback
pub(crate) mod reset; // a new timeout for a freeze in force
pub(crate) mod status; // what a filesystem's freeze is, and the list
pub(crate) mod query; // QUERY: frozen or not, in the kernel's word
pub(crate) mod thaw; // THAW, and ending a recorded freeze
pub(crate) mod freeze_window; // flush, FIFREEZE in waves, nothing else
pub(crate) mod resolve; // a path or fd to the filesystem it names
pub(crate) mod settings; // the caller's choices every operation reads
