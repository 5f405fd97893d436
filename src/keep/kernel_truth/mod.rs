//! The kernel's own word on whether a filesystem is frozen, and on when a
//! freeze ends, whoever ends it.
//!
//! Linux offers no query, but `unlinkat(dir_fd, "<a name that does not
//! exist>", 0)` on a frozen filesystem waits in `mnt_want_write` (its thread
//! shows `percpu_rwsem_wait` as its wait channel) and returns `ENOENT` just
//! after the thaw, whoever thawed; on a thawed filesystem it returns `ENOENT`
//! at once. It changes nothing on the filesystem, and a new FIFREEZE cannot
//! complete before such a waiter has passed, so no thaw goes unseen.
//!
//! A waiter cannot be killed while it waits, and a process with one cannot
//! finish exiting before the thaw: waiters run only in the holder, never in
//! the caller's process. Past 120 s the kernel's hung-task detector reports a
//! waiter, as it reports any writer that a freeze blocks.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

mod waiter; // the thread that waits, and the line that tells it to go
mod held_channels; // watchers' wait channels kept open: QUERY's exact look
mod wait_channel; // a watcher read from outside: exists, waits

pub(crate) use held_channels::watcher_waits_now;
pub(crate) use wait_channel::{WatcherSays, waits_for_thaw, watcher_says, watcher_waits};
pub(crate) use waiter::{
    Seen, Waiter, any_thread_running, confirm, control_line, hello, last_word, send_go, tell_go,
};
