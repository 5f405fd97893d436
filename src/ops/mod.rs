//! The operations, step by step: FREEZE (one filesystem or several, and its
//! short freeze window), THAW, QUERY and status, reset of a timeout, the
//! RAII guard. [`freezer::Freezer`] lists them all; each lives in its own file.

pub(crate) mod freeze;
pub(crate) mod freeze_guard;
pub(crate) mod freeze_window;
pub(crate) mod freezer;
pub(crate) mod query;
pub(crate) mod reset;
pub(crate) mod run_frozen;
pub(crate) mod resolve;
pub(crate) mod status;
pub(crate) mod thaw;
