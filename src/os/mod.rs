//! Facts about the machine and the system calls that read or change them:
//! mounts and superblocks, the object a caller names, processes and clocks,
//! fork safety, starting a detached process. Knows nothing of freezes.
//!
//! Top down; imports only go down this list (tests/integration/layering.rs):

pub(crate) mod target; // the object a caller names, by statx
pub(crate) mod cgroup; // where a keeper settles: out of its caller's cgroup
pub(crate) mod spawn; // starting a detached process
pub(crate) mod fork; // fork safety: locks and fds a child must not keep
pub(crate) mod mounts; // mountinfo, superblocks, statmount
pub(crate) mod fd_passing; // fds over unix sockets
pub(crate) mod process; // processes, clocks, generations
pub(crate) mod small_file; // small files read whole in one read
pub(crate) mod untimed_stat; // statx without timestamps, for files then changed
pub(crate) mod syscalls; // the raw calls: ioctls, signals, the rest
