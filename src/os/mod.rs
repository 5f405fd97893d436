//! Facts about the machine and the system calls that read or change them:
//! mounts and superblocks, the object a caller names, processes and clocks,
//! fork safety, starting a detached process. Knows nothing of freezes.

pub(crate) mod cgroup;
pub(crate) mod fd_passing;
pub(crate) mod fork;
pub(crate) mod mounts;
pub(crate) mod process;
pub(crate) mod spawn;
pub(crate) mod syscalls;
pub(crate) mod target;
