//! Hold hooks: the executables of `/etc/freezefs/hold.d/` that hold an
//! application's lock (MariaDB's `FLUSH TABLES WITH READ LOCK`) for exactly
//! as long as a freeze, in a session that stays open between the freeze
//! and the thaw.
//!
//! Only the holder runs them, once per freeze operation (one `freezefs()`
//! call, one command line, one group member's freeze), before the freeze
//! hooks and the flush:
//!
//! - `HOOK hold MOUNTPOINT...`, in lexical order, each with its stdin a
//!   pipe of the holder's and `FREEZEFS_READY_FD=3`: it takes its lock and
//!   writes `ready [TEXT]` on fd 3. Not ready within
//!   `freezefs_hook_timeout`, or exited first: the freeze is cancelled
//!   (`ECANCELED`) and those already holding are released;
//! - at the end of the last of the operation's freezes, however it ends,
//!   after the thaw, `thaw REASON` on its stdin, which is then closed; it
//!   has `freezefs_hold_grace` seconds to exit, then its process group is
//!   killed;
//! - one that exits before it is told broke its freeze's promise: its
//!   records say so, and THAW answers `ECANCELED`.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod asked; // which hold hooks a freeze asks for, and on the wire
pub(crate) mod holding; // one hold hook's process, from ready to release
pub(crate) mod ready; // starting one, and its ready line

pub use asked::{HOLD_DIR, HOLD_DIR_ENV};
pub(crate) use asked::{HoldHooks, hold_dir_path};
pub(crate) use holding::{Exit, Holding, OnBroken, release_all, start_all};
