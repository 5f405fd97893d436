//! The system calls rustix does not wrap, each a tiny typed function, and
//! the one definition of every ioctl and system call number the library and
//! the shim use.
//!
//! With [`crate::os::spawn`], the only module of the safe core allowed
//! `unsafe`; each block says why it is sound.
#![allow(unsafe_code)]

use std::ffi::{CStr, OsString};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

/// `FIFREEZE` = `_IOWR('X', 119, int)` (also XFS's old `XFS_IOC_FREEZE`).
pub const FIFREEZE: u32 = 0xC004_5877;
/// `FITHAW` = `_IOWR('X', 120, int)` (also XFS's old `XFS_IOC_THAW`).
pub const FITHAW: u32 = 0xC004_5878;
/// Solaris VxFS `VX_FREEZE`: freeze, timeout by value.
pub const VX_FREEZE: u32 = 0x564F_4C64;
/// Solaris VxFS `VX_THAW`.
pub const VX_THAW: u32 = 0x564F_4C65;
/// Solaris VxFS `VX_FREEZE_ALL` (LP64 `struct vx_freezeall`).
pub const VX_FREEZE_ALL: u32 = 0x5658_4606;
/// `statmount(2)` (Linux 6.8), the same number on every architecture of the
/// unified system call table; libc does not name it yet.
const SYS_STATMOUNT: libc::c_long = 457;

/// The raw system call, not libc's `ioctl()`: the preload shim interposes
/// `ioctl()`, and the library must never call back into it.
pub fn ioctl_no_arg<Fd: AsFd>(fd: Fd, request: u32) -> io::Result<()> {
    // The kernel ignores the argument; a valid int 0 (not NULL) keeps memory
    // checkers, which read _IOWR(.., int) as a 4-byte buffer, quiet, and is
    // "no timeout" to kernels carrying the 2008 timeout patch.
    let mut unused: libc::c_int = 0;
    // SAFETY: the fd is borrowed for the call; the kernel may read or write
    // the one int `unused` points to, which lives across the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_ioctl,
            fd.as_fd().as_raw_fd(),
            libc::c_ulong::from(request),
            &mut unused as *mut libc::c_int,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `mount --bind source target`.
pub fn bind_mount(source: &std::ffi::CStr, target: &std::ffi::CStr) -> io::Result<()> {
    // SAFETY: both paths are NUL-terminated and outlive the call; MS_BIND
    // reads no file system type and no data.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Freezes the filesystem that `fd` lies on (`FIFREEZE`).
pub(crate) fn fifreeze<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    ioctl_no_arg(fd, FIFREEZE)
}

/// Thaws the filesystem that `fd` lies on (`FITHAW`); `EINVAL` when it was not frozen.
pub(crate) fn fithaw<Fd: AsFd>(fd: Fd) -> io::Result<()> {
    ioctl_no_arg(fd, FITHAW)
}

/// True in a setuid/setgid or otherwise privilege-changing exec (`AT_SECURE`).
pub(crate) fn at_secure() -> bool {
    // SAFETY: getauxval only reads the process's auxiliary vector.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// `secure_getenv`: the variable, unless the process runs under `AT_SECURE`.
pub(crate) fn secure_env(name: &str) -> Option<OsString> {
    if at_secure() {
        None
    } else {
        std::env::var_os(name)
    }
}

/// Sets the calling thread's `errno`.
pub fn set_errno(errno: i32) {
    // SAFETY: __errno_location returns the calling thread's errno slot, valid
    // for the thread's lifetime.
    unsafe { *libc::__errno_location() = errno };
}

/// Blocks every signal in the calling thread until dropped, so that a thread
/// spawned meanwhile starts with all signals blocked and never takes one that
/// was meant for the caller.
pub(crate) struct AllSignalsBlocked {
    previous: libc::sigset_t,
}

impl AllSignalsBlocked {
    /// Blocks all signals; the previous mask comes back on drop.
    pub(crate) fn new() -> AllSignalsBlocked {
        // SAFETY: sigset_t is plain data; sigfillset initialises it and
        // pthread_sigmask only reads `all` and writes `previous`.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut previous: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_BLOCK, &all, &mut previous);
            AllSignalsBlocked { previous }
        }
    }
}

impl Drop for AllSignalsBlocked {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by new(); `previous` is initialised.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.previous, std::ptr::null_mut()) };
    }
}

/// Registers fork handlers (`pthread_atfork`). glibc ties them to this
/// object's `__dso_handle`, so a dlclose() of the library unregisters them.
pub(crate) fn register_atfork(
    prepare: extern "C" fn(),
    parent: extern "C" fn(),
    child: extern "C" fn(),
) -> io::Result<()> {
    // SAFETY: the handlers are plain extern "C" functions of this library
    // that stay mapped for as long as they are registered.
    let rc = unsafe { libc::pthread_atfork(Some(prepare), Some(parent), Some(child)) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Closes a raw fd that this library owns but holds no `OwnedFd` for (the
/// child's copies of lock fds after fork).
pub(crate) fn close_raw(fd: i32) {
    // SAFETY: only called on fds this library opened and registered, in the
    // child after fork, where no other owner of that number exists.
    unsafe { libc::close(fd) };
}

/// The file this code was loaded from (`dladdr`): libfreezefs.so, or the
/// executable a static or Rust build is linked into.
pub(crate) fn loaded_object_path() -> Option<std::path::PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: Dl_info is plain data (pointers); all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let here = loaded_object_path as *const libc::c_void;
    // SAFETY: dladdr only reads the loader's tables and fills `info`.
    if unsafe { libc::dladdr(here, &mut info) } == 0 || info.dli_fname.is_null() {
        return None;
    }
    // SAFETY: dli_fname is a NUL-terminated string owned by the loader,
    // valid while the object stays loaded (it is: we are running in it).
    let name = unsafe { std::ffi::CStr::from_ptr(info.dli_fname) };
    Some(std::path::PathBuf::from(std::ffi::OsStr::from_bytes(
        name.to_bytes(),
    )))
}

/// Takes an exclusive open-file-description lock (`F_OFD_SETLK`, or
/// `F_OFD_SETLKW` when `wait`) on the one byte at `offset` of the file `fd`
/// is open on: released when the last fd of that open file goes, as a
/// `flock` is, but one of many in one file. `Ok(false)`: another open file
/// holds it and `wait` was not asked. `EINTR` is retried.
pub(crate) fn lock_byte<Fd: AsFd>(fd: Fd, offset: i64, wait: bool) -> io::Result<bool> {
    let lock = libc::flock {
        l_type: libc::F_WRLCK as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: offset,
        l_len: 1,
        l_pid: 0,
    };
    let command = if wait {
        libc::F_OFD_SETLKW
    } else {
        libc::F_OFD_SETLK
    };
    loop {
        // SAFETY: `lock` is a valid, initialized `struct flock` that lives
        // across the call; the kernel only reads it for these commands.
        let rc = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), command, &lock) };
        if rc == 0 {
            return Ok(true);
        }
        match io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EINTR) => continue,
            e if matches!(e.raw_os_error(), Some(libc::EAGAIN | libc::EACCES)) && !wait => {
                return Ok(false);
            }
            e => return Err(e),
        }
    }
}

/// Whether thread `tid` of process `pid` exists (`tgkill` with signal 0: no
/// signal is sent). A thread other than the leader is gone at once when it
/// returns; no zombie of it stays.
pub(crate) fn thread_exists(pid: u32, tid: u32) -> bool {
    let (Ok(pid), Ok(tid)) = (libc::pid_t::try_from(pid), libc::pid_t::try_from(tid)) else {
        return false;
    };
    // SAFETY: signal 0 only checks that the thread exists and may be
    // signalled; no memory is passed.
    let rc = unsafe { libc::syscall(libc::SYS_tgkill, pid, tid, 0) };
    // EPERM: it exists, we may only not signal it. ESRCH alone says gone.
    rc == 0 || io::Error::last_os_error().raw_os_error() != Some(libc::ESRCH)
}

/// What [`spawn_detached`] hands its thread.
type ThreadBody = Box<dyn FnOnce() + Send + 'static>;

/// Starts a detached thread named `name` with `stack` bytes of stack,
/// through `pthread_create` itself: std's threads also map, and unmap on
/// exit, an alternate signal stack each (its stack-overflow report), two
/// more changes to the address space per thread, each flushing the TLB of
/// every CPU the process runs on. The holder starts one per freeze. A
/// panic in `body` ends the thread, never the process.
pub(crate) fn spawn_detached(
    name: &'static CStr,
    stack: usize,
    body: ThreadBody,
) -> io::Result<()> {
    extern "C" fn start(arg: *mut libc::c_void) -> *mut libc::c_void {
        // SAFETY: `arg` is the box spawn_detached leaked for this thread,
        // taken back exactly once, here.
        let (name, body) = unsafe { *Box::from_raw(arg.cast::<(&'static CStr, ThreadBody)>()) };
        // SAFETY: names this very thread; `name` is NUL-terminated and
        // at most 15 bytes long by the callers' constants.
        unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr()) };
        // No panic unwinds out of a C entry point.
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(body));
        std::ptr::null_mut()
    }
    let arg = Box::into_raw(Box::new((name, body)));
    // SAFETY: attr is initialised by pthread_attr_init before use and
    // destroyed after; `start` takes `arg` back, or it is taken back here
    // when no thread was started.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        libc::pthread_attr_init(&mut attr);
        libc::pthread_attr_setstacksize(&mut attr, stack.max(libc::PTHREAD_STACK_MIN));
        libc::pthread_attr_setdetachstate(&mut attr, libc::PTHREAD_CREATE_DETACHED);
        let mut thread: libc::pthread_t = 0;
        let rc = libc::pthread_create(&mut thread, &attr, start, arg.cast());
        libc::pthread_attr_destroy(&mut attr);
        if rc != 0 {
            drop(Box::from_raw(arg));
            return Err(io::Error::from_raw_os_error(rc));
        }
    }
    Ok(())
}

/// Takes ownership of an fd this process inherited at a known number (the
/// holder's listening socket and state directory, fds 3 and 4).
pub(crate) fn take_inherited_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: called once per number, at the holder's start, on fds its
    // launcher handed over and that nothing else in the process owns.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Ignores a signal in this process (the holder's own, never the caller's).
pub(crate) fn ignore_signal(signal: libc::c_int) {
    // SAFETY: SIG_IGN installs no handler code; any signal number is accepted.
    unsafe { libc::signal(signal, libc::SIG_IGN) };
}

/// Unblocks every signal in the calling thread (the holder at its start).
pub(crate) fn unblock_all_signals() {
    // SAFETY: sigemptyset initialises the set; pthread_sigmask only reads it.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
    }
}

/// Makes `cmd`'s child start with no signal blocked. A thread of the
/// holder blocks what its signalfd reads, and a child inherits its
/// parent's mask across exec: a hook would run unable to receive SIGTERM.
pub(crate) fn start_unblocked(cmd: &mut std::process::Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only sigemptyset and pthread_sigmask, both async-signal-safe, on a
    // set on its own stack.
    unsafe {
        cmd.pre_exec(|| {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Gives `cmd`'s child `fd` as its file descriptor 3, open across exec
/// (a hold hook's ready pipe). `fd` must stay open until the spawn.
pub(crate) fn pass_as_fd3(cmd: &mut std::process::Command, fd: BorrowedFd<'_>) {
    use std::os::unix::process::CommandExt;
    let raw = fd.as_raw_fd();
    // SAFETY: the closure runs in the child between fork and exec and calls
    // only dup2 and fcntl, both async-signal-safe, on a descriptor the
    // parent keeps open until the spawn returns.
    unsafe {
        cmd.pre_exec(move || {
            if raw == 3 {
                // dup2 onto itself keeps close-on-exec: clear it instead.
                if libc::fcntl(3, libc::F_SETFD, 0) == -1 {
                    return Err(io::Error::last_os_error());
                }
            } else if libc::dup2(raw, 3) == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// The signals the holder reads from its poll set: SIGTERM, SIGINT and
/// SIGHUP (stop) and SIGUSR1 (retire).
pub(crate) const HOLDER_SIGNALS: [i32; 4] =
    [libc::SIGTERM, libc::SIGINT, libc::SIGHUP, libc::SIGUSR1];

/// Blocks `signals` in the calling thread (and in the threads it starts
/// from now on) and returns a non-blocking signalfd that reads them.
pub(crate) fn blocked_signals_fd(signals: &[i32]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t is plain data that sigemptyset/sigaddset initialise;
    // pthread_sigmask and signalfd only read it; signalfd returns a new fd
    // that nothing else owns.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &signal in signals {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(fd))
    }
}

/// The numbers of every signal pending on a [`blocked_signals_fd`] fd, read.
pub(crate) fn pending_signals<Fd: AsFd>(fd: Fd) -> Vec<i32> {
    // struct signalfd_siginfo: 128 bytes, ssi_signo its first u32.
    let mut info = [0u8; 128];
    let mut pending = Vec::new();
    while let Ok(128) = rustix::io::read(&fd, &mut info) {
        pending.push(u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32);
    }
    pending
}

/// `struct mnt_id_req`, version 0.
#[repr(C)]
struct MntIdReq {
    size: u32,
    spare: u32,
    mnt_id: u64,
    param: u64,
}

const STATMOUNT_SB_BASIC: u64 = 0x1;
const STATMOUNT_MNT_POINT: u64 = 0x10;
const STATMOUNT_FS_TYPE: u64 = 0x20;
/// Where `struct statmount`'s string area starts: its fixed part is 512
/// bytes in every kernel (new fields take the place of spare ones).
const STATMOUNT_STR_OFFSET: usize = 512;

/// What statmount(2) says of a mount.
pub(crate) struct StatMount {
    /// The superblock's device (major, minor).
    pub(crate) device: (u32, u32),
    /// The filesystem type.
    pub(crate) fs_type: Vec<u8>,
    /// The mount point, in this process's mount namespace.
    pub(crate) mount_point: Vec<u8>,
}

/// `statmount(2)` (Linux 6.8) of the mount with this unique id: the
/// superblock, type and mount point without reading all of mountinfo.
pub(crate) fn statmount(unique_mount_id: u64) -> io::Result<StatMount> {
    let req = MntIdReq {
        size: std::mem::size_of::<MntIdReq>() as u32,
        spare: 0,
        mnt_id: unique_mount_id,
        param: STATMOUNT_SB_BASIC | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE,
    };
    let mut words = vec![0u64; 1024]; // 8 KiB, 8-byte aligned
    loop {
        let bytes = words.len() * 8;
        // SAFETY: req is a valid mnt_id_req; the kernel writes at most
        // `bytes` bytes into `words`, which is that large and aligned.
        let rc = unsafe {
            libc::syscall(
                SYS_STATMOUNT,
                &req as *const MntIdReq,
                words.as_mut_ptr(),
                bytes,
                0u32,
            )
        };
        if rc == 0 {
            break;
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::EOVERFLOW) && bytes < 1 << 20 {
            words = vec![0u64; words.len() * 4];
            continue;
        }
        return Err(err);
    }
    // SAFETY: u64 slice viewed as bytes; same memory, no alignment needed.
    let buf: &[u8] = unsafe { std::slice::from_raw_parts(words.as_ptr().cast(), words.len() * 8) };
    let u32_at = |off: usize| u32::from_ne_bytes(buf[off..off + 4].try_into().unwrap());
    let u64_at = |off: usize| u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap());
    let size = (u32_at(0) as usize).min(buf.len());
    let mask = u64_at(8);
    let wanted = STATMOUNT_SB_BASIC | STATMOUNT_MNT_POINT | STATMOUNT_FS_TYPE;
    if mask & wanted != wanted {
        return Err(io::Error::from_raw_os_error(libc::ENOSYS));
    }
    let string = |offset: u32| -> io::Result<Vec<u8>> {
        let start = STATMOUNT_STR_OFFSET + offset as usize;
        let area = buf
            .get(start..size)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        let end = area
            .iter()
            .position(|&b| b == 0)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::EIO))?;
        Ok(area[..end].to_vec())
    };
    // Offsets of struct statmount: sb_dev_major 16, sb_dev_minor 20,
    // fs_type 36, mnt_point 108 (include/uapi/linux/mount.h).
    Ok(StatMount {
        device: (u32_at(16), u32_at(20)),
        fs_type: string(u32_at(36))?,
        mount_point: string(u32_at(108))?,
    })
}

/// Reads whatever is pending on a non-blocking fd.
pub(crate) fn drain<Fd: AsFd>(fd: Fd) {
    let mut buf = [0u8; 4096];
    while matches!(rustix::io::read(&fd, &mut buf), Ok(n) if n > 0) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_exists_while_it_runs_and_not_once_it_has_exited() {
        let pid = std::process::id();
        let me = rustix::thread::gettid().as_raw_nonzero().get() as u32;
        assert!(thread_exists(pid, me));
        let gone = std::thread::spawn(|| rustix::thread::gettid().as_raw_nonzero().get() as u32)
            .join()
            .unwrap();
        // `join` returns when the kernel clears the thread's id, early in
        // its exit; the thread is unlisted a moment later.
        let start = std::time::Instant::now();
        while thread_exists(pid, gone) && start.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        assert!(!thread_exists(pid, gone));
        // Not a thread of that process: another process's id.
        assert!(!thread_exists(pid, 1));
    }
}
