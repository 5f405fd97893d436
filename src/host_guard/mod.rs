//! The guard (`freezefs --guard`, freezefs-guard.service): no filesystem
//! on this host stays frozen past `freezefs_foreign_max_timeout`, whoever
//! froze it. Freezers that bypass freezefs (Go programs, static binaries,
//! raw `syscall(SYS_ioctl)`) leave freezes that no one keeps; the guard
//! sees them by the kernel's word (DESIGN §9) within a second and thaws
//! them at the limit. It never ends a freezefs freeze, never touches a
//! network, FUSE, read-only or unfreezable filesystem, and never needs the
//! filesystem it is about to thaw: between ticks it looks nothing up there
//! and writes only to the state directory, and not even there while that
//! is frozen.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod guard_loop; // the loop: signals, ticks, the prober, thaws
pub(crate) mod foreign; // one frozen filesystem: noted, told, thawed at the limit
pub(crate) mod prober; // the thread that probes every watched filesystem
pub(crate) mod watched; // which filesystems are watched
pub(crate) mod limit; // freezefs_foreign_max_timeout
