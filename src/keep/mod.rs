//! What keeps a freeze's deadline and tells the truth about its end: the
//! helper thread in the caller's process, the deadline loop it and the
//! holder run, the one routine that ends a freeze that is over, and the
//! kernel's own word on when a freeze ends, whoever ends it.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod helper_thread; // the caller's own keeper of its deadlines
pub(crate) mod watch; // the deadline loop: one Watch per freeze, one Keeper
pub(crate) mod end; // the one routine that ends a freeze that is over
pub(crate) mod kernel_truth; // the waiter: a thaw seen, whoever thawed
