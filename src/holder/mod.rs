//! The holder: the process that keeps every freeze to its deadline however
//! its caller ends, its warden, and how callers reach them.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod server; // the holder's loop: requests in, freezes kept
pub(crate) mod probes; // is this filesystem frozen, by whoever: the answer
pub(crate) mod warden; // thaws at the deadline when the holder is gone
pub(crate) mod life; // adoption, placement, stop
pub(crate) mod hook_client; // a caller asking the holder to run hooks
pub(crate) mod hook_jobs; // the holder running hooks, in order, off its loop
pub(crate) mod hold_keeper; // the hold hooks it runs, tied to their freezes
pub(crate) mod inbox; // the holder's connections and their pending requests
pub(crate) mod probe_line; // QUERY's own line to a probe thread
pub(crate) mod client; // a caller handing a freeze to the holder, or asking it
pub(crate) mod protocol; // what a client asks and the holder answers, both ends
