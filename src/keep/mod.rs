//! What keeps a freeze's deadline and owner alive: the helper thread in the
//! caller's process, the holder process that outlives the caller (its client
//! and server sides), and the one routine that ends a freeze that is over.

pub(crate) mod continuity;
pub(crate) mod end;
pub(crate) mod hook_client;
pub(crate) mod helper_thread;
pub(crate) mod holder_client;
pub(crate) mod holder_inbox;
pub(crate) mod holder_life;
pub(crate) mod holder_requests;
pub(crate) mod hook_jobs;
pub(crate) mod hook_wire;
pub(crate) mod hooks;
pub(crate) mod holder_server;
pub(crate) mod warden;
pub(crate) mod watch;
