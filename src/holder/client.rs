//! The holder, client side: find it, start it when none runs, hand it a freeze.
//!
//! One holder serves a state directory. It listens on `holder.sock` there
//! (inside the 0700 directory, so only root reaches it), and exits shortly
//! after it holds nothing. A client takes `lock.holder`, connects, and when
//! nobody answers binds a fresh listening socket itself and starts a holder
//! on it: connections queue in the backlog until the holder accepts, so
//! there is no readiness race. A holder about to exit takes the same lock
//! and first serves anything queued.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::io::Errno;
use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};

use crate::error::{Error, Result};
use crate::holder::protocol::{Answer, ProbeAnswer, Request};
use crate::hooks::{HookTarget, Hooks};
use crate::keep::kernel_truth::{self, Seen};
use crate::os::fd_passing;
use crate::os::fork::ParentOnlyFd;
use crate::os::mounts::Device;
use crate::os::syscalls;
use crate::store::state_dir::StateDir;

/// Environment variable naming the holder executable (ignored under `AT_SECURE`).
pub const HOLDER_ENV: &str = "FREEZEFS_HOLDER";
/// The holder executable's file name.
pub(crate) const HOLDER_NAME: &str = "freezefs-holder";
/// The socket a holder listens on, in the state directory.
pub(crate) const SOCKET_NAME: &str = "holder.sock";
/// The lock that orders starting and stopping holders.
pub(crate) const HOLDER_LOCK_NAME: &str = "lock.holder";
/// The lock a warden holds for its life: one warden per state directory.
pub(crate) const WARDEN_LOCK_NAME: &str = "lock.warden";
/// How long a client waits for the holder's answer.
pub(crate) const ANSWER_TIMEOUT_S: i64 = 5;

/// The holder executable: the explicit choice, else `FREEZEFS_HOLDER`, else
/// the one next to the loaded library or executable, else the installed one.
pub(crate) fn executable(explicit: Option<&Path>) -> PathBuf {
    if let Some(path) = explicit {
        return path.to_path_buf();
    }
    if let Some(path) = syscalls::secure_env(HOLDER_ENV).filter(|p| !p.is_empty()) {
        return PathBuf::from(path);
    }
    if let Some(beside) = syscalls::loaded_object_path()
        .and_then(|lib| lib.parent().map(|d| d.join(HOLDER_NAME)))
        .filter(|p| p.is_file())
    {
        return beside;
    }
    Path::new(env!("FREEZEFS_LIBEXECDIR")).join(HOLDER_NAME)
}

/// The socket's address, through the directory fd: no length limit from
/// the directory's own path, and no lookup of it.
fn socket_addr(dir: &StateDir) -> Result<SocketAddrUnix> {
    use std::os::fd::AsRawFd;
    let path = format!("/proc/self/fd/{}/{SOCKET_NAME}", dir.fd().as_raw_fd());
    SocketAddrUnix::new(path.as_str()).map_err(|e| Error::os("holder socket address", e))
}

pub(crate) fn unavailable(exe: &Path, reason: impl Into<String>) -> Error {
    Error::HolderUnavailable {
        path: exe.to_path_buf(),
        reason: reason.into(),
    }
}

/// A new socket, registered so that a forked child closes its copy: the
/// holder must see the connection end when the caller is done.
fn seqpacket() -> Result<ParentOnlyFd> {
    ParentOnlyFd::open(|| {
        rustix::net::socket_with(
            AddressFamily::UNIX,
            SocketType::SEQPACKET,
            SocketFlags::CLOEXEC,
            None,
        )
    })
    .map_err(|e| Error::os("socket", e))
}

/// Connects to a running holder, without the start/stop lock: the common
/// case. `None` when no holder listens. Whether it still answers is seen
/// when its answer is awaited (see [`receive_answer`]).
pub(crate) fn connect_running(dir: &StateDir) -> Result<Option<ParentOnlyFd>> {
    let addr = socket_addr(dir)?;
    let sock = seqpacket()?;
    Ok(rustix::net::connect(&sock, &addr).is_ok().then_some(sock))
}

/// Tells a running holder that a record changed in a way its waiters do
/// not tell of (see [`crate::holder::protocol::Request::Look`]); without
/// waiting, and without starting one: a holder started later reads every
/// record anyway.
pub(crate) fn ask_to_look(dir: &StateDir) {
    if let Ok(Some(conn)) = connect_running(dir) {
        let line = crate::holder::protocol::Request::Look.encode();
        let _ = fd_passing::send_with_fds(&conn, line.as_bytes(), &[]);
    }
}

/// Whether the process at the other end still runs. A holder killed while
/// one of its waiters waits in the kernel cannot finish exiting before the
/// thaw: its socket still takes connections, but nobody answers them.
fn peer_alive(sock: &ParentOnlyFd) -> bool {
    rustix::net::sockopt::socket_peercred(sock).is_ok_and(|cred| {
        crate::os::process::start_time(cred.pid.as_raw_nonzero().get() as u32).is_some()
    })
}

/// Connects to the state directory's holder, starting one when none answers.
pub(crate) fn connect_or_start(dir: &StateDir, exe: &Path) -> Result<ParentOnlyFd> {
    let addr = socket_addr(dir)?;
    let _lock = dir.lock_named(HOLDER_LOCK_NAME)?;
    let sock = seqpacket()?;
    match rustix::net::connect(&sock, &addr) {
        Ok(()) if peer_alive(&sock) => return Ok(sock),
        // A killed holder that cannot finish exiting yet: replaced.
        Ok(()) => {}
        Err(Errno::CONNREFUSED | Errno::NOENT) => {}
        Err(e) => return Err(Error::os("connect to the holder", e)),
    }
    let sock = seqpacket()?;
    // No holder: a stale socket file (a killed holder) is replaced.
    let _ = rustix::fs::unlinkat(dir.fd(), SOCKET_NAME, rustix::fs::AtFlags::empty());
    let listener = seqpacket()?;
    rustix::net::bind(&listener, &addr).map_err(|e| Error::os("bind the holder socket", e))?;
    // bind honours the umask; state the mode like every other file here.
    rustix::fs::chmodat(
        dir.fd(),
        SOCKET_NAME,
        rustix::fs::Mode::RUSR | rustix::fs::Mode::WUSR,
        rustix::fs::AtFlags::empty(),
    )
    .map_err(|e| Error::os("chmod the holder socket", e))?;
    rustix::net::listen(&listener, 128).map_err(|e| Error::os("listen", e))?;
    start(exe, listener.as_fd(), dir)?;
    rustix::net::connect(&sock, &addr).map_err(|e| Error::os("connect to the holder", e))?;
    Ok(sock)
}

/// Starts a holder serving `listener` and `dir`, detached from the caller
/// (see [`crate::os::spawn`]).
fn start(exe: &Path, listener: BorrowedFd<'_>, dir: &StateDir) -> Result<()> {
    launch(exe, c"--serve", None, listener, dir)
}

/// Starts a warden for `dir` (see [`crate::holder::warden`]), detached like a
/// holder; `systemd`: its holders are systemd's to restart.
pub(crate) fn start_warden(exe: &Path, dir: &StateDir, systemd: bool) -> Result<()> {
    let flag = systemd.then_some(c"--systemd");
    launch(exe, c"--warden", flag, dir.fd().as_fd(), dir)
}

/// Runs `exe MODE DIR [FLAG]` detached, with `fd3` and the state directory
/// as its fds 3 and 4.
fn launch(
    exe: &Path,
    mode: &std::ffi::CStr,
    flag: Option<&std::ffi::CStr>,
    fd3: BorrowedFd<'_>,
    dir: &StateDir,
) -> Result<()> {
    let c_exe = CString::new(exe.as_os_str().as_bytes())
        .map_err(|_| unavailable(exe, "path contains a NUL byte"))?;
    let c_dir = CString::new(dir.path().as_os_str().as_bytes())
        .map_err(|_| unavailable(exe, "state directory path contains a NUL byte"))?;
    let mut argv = vec![c"freezefs-holder", mode, c_dir.as_c_str()];
    argv.extend(flag);
    // A clean environment: above all no LD_PRELOAD of the caller's; only
    // the syslog socket override travels, so that tests hear the holder.
    let syslog = syscalls::secure_env(crate::events::SOCKET_ENV).and_then(|path| {
        let mut var = format!("{}=", crate::events::SOCKET_ENV).into_bytes();
        var.extend_from_slice(path.as_bytes());
        CString::new(var).ok()
    });
    let mut envp = vec![c"PATH=/usr/sbin:/usr/bin:/sbin:/bin"];
    envp.extend(syslog.as_deref());
    crate::os::spawn::spawn_detached(&c_exe, &argv, &envp, [fd3, dir.fd().as_fd()])
        .map_err(|e| unavailable(exe, e.to_string()))
}

/// Makes sure a holder serves `dir`, starting one when none answers: the
/// warden's way to replace a holder that died while freezes were kept.
pub(crate) fn ensure_holder(dir: &StateDir, exe: &Path) -> Result<()> {
    // The connection, closed at once, reads as an empty request: refused.
    connect_or_start(dir, exe).map(drop)
}

/// A freeze attempt the holder has taken: the connection stays open until
/// the attempt is over (dropped), which tells the holder to go by the
/// record alone from then on.
pub(crate) struct Handoff {
    /// The holder's pid.
    pub(crate) holder_pid: u32,
    /// The number of the holder's fd on the mount.
    pub(crate) holder_fd: Option<u32>,
    _conn: ParentOnlyFd,
    /// The teller's end of the freeze's waiter, parked in the holder.
    waiter_control: Option<OwnedFd>,
}

/// How long a freeze's waiter may take to be seen waiting.
const CONFIRM_LIMIT: std::time::Duration = std::time::Duration::from_millis(250);

impl Handoff {
    /// Starts the freeze's waiter in `dir` (a directory on the filesystem):
    /// called just after FIFREEZE returned, before the caller hears of the
    /// freeze, so that it waits on this very freeze. Returns its thread (id,
    /// start time) for the record; [`Handoff::confirm_watch`] then checks
    /// that it waits. The holder's main loop is not involved.
    pub(crate) fn start_watch(&self, dir: Option<BorrowedFd<'_>>) -> Option<(u32, u64)> {
        kernel_truth::tell_go(self.waiter_control.as_ref()?, dir?).ok()
    }

    /// Whether the waiter started by [`Handoff::start_watch`] waits for this
    /// freeze's thaw, was let through already, or cannot tell.
    pub(crate) fn confirm_watch(&self, thread: (u32, u64)) -> Watching {
        let Some(control) = &self.waiter_control else {
            return Watching::Unknown;
        };
        match kernel_truth::confirm(control, self.holder_pid, thread, CONFIRM_LIMIT) {
            Some(Seen::Frozen) => Watching::Thread(thread.0, thread.1),
            Some(Seen::Thawed) => Watching::Ended,
            Some(Seen::CannotTell) | None => Watching::Unknown,
        }
    }
}

/// An attempt sent to the holder whose answer has not been read yet: the
/// caller goes on (record, flush) while the holder takes it.
pub(crate) struct Pending {
    conn: ParentOnlyFd,
    /// Sent without the start/stop lock to a running holder, which might
    /// have been exiting: then it is sent again the careful way.
    optimistic: bool,
    exe: PathBuf,
    request: String,
    mount_fd: OwnedFd,
}

/// Hands a freeze to the holder before its record is written and before
/// FIFREEZE: the holder keeps an fd on the mount and the freeze's deadline
/// from then on, whatever happens to the caller, and parks a waiter for it
/// (see [`Handoff::start_watch`]). Read the answer with
/// [`Pending::answer_here`]: before FIFREEZE from a holder started for it,
/// else while FIFREEZE flushes (see `ops::freeze`).
pub(crate) fn hold(
    dir: &StateDir,
    exe: &Path,
    device: Device,
    generation: u64,
    mount_fd: BorrowedFd<'_>,
    hooks: Option<(&Hooks, &HookTarget)>,
) -> Result<Pending> {
    let mount_fd = rustix::io::fcntl_dupfd_cloexec(mount_fd, 0).map_err(|e| Error::os("dup", e))?;
    let (conn, optimistic) = match connect_running(dir)? {
        Some(conn) => (conn, true),
        None => (connect_or_start(dir, exe)?, false),
    };
    let pending = Pending {
        conn,
        optimistic,
        exe: exe.to_path_buf(),
        // With hooks, the holder runs the thaw hooks when the freeze ends.
        request: Request::Hold {
            device,
            generation,
            hooks: hooks.map(|(hooks, target)| (hooks.clone(), target.clone())),
        }
        .encode(),
        mount_fd,
    };
    pending.send(&pending.conn)?;
    Ok(pending)
}

impl Pending {
    /// Whether it went to a holder that was running already (not one
    /// started for it).
    pub(crate) fn to_running_holder(&self) -> bool {
        self.optimistic
    }

    fn send(&self, conn: &ParentOnlyFd) -> Result<()> {
        send(conn, &self.exe, &self.request, &[self.mount_fd.as_fd()])
    }

    /// What the holder said on this connection (held, or refused); no
    /// answer gives the attempt back with the error, for
    /// [`Pending::send_to_new_holder`]. Starts nothing: what FREEZE may do
    /// while the filesystem is frozen.
    #[allow(clippy::result_large_err)] // the attempt itself, handed back
    pub(crate) fn answer_here(self) -> std::result::Result<Result<Handoff>, (Pending, Error)> {
        match receive_with_fd(&self.conn, &self.exe) {
            Ok(said) => Ok(handoff(&self.exe, self.conn, said)),
            Err(e) => Err((self, e)),
        }
    }

    /// Sends the attempt to the holder that answers now, started for it if
    /// none does, and waits for its answer.
    pub(crate) fn send_to_new_holder(self, dir: &StateDir) -> Result<Handoff> {
        let conn = connect_or_start(dir, &self.exe)?;
        self.send(&conn)?;
        let said = receive_with_fd(&conn, &self.exe)?;
        handoff(&self.exe, conn, said)
    }
}

/// The hand-off a holder's answer on `conn` makes, or its refusal.
fn handoff(
    exe: &Path,
    conn: ParentOnlyFd,
    (answer, fd): (String, Option<OwnedFd>),
) -> Result<Handoff> {
    let Some(Answer::Held {
        holder_pid,
        holder_fd,
    }) = Answer::parse(&answer)
    else {
        return Err(unavailable(exe, format!("the holder refused: {answer}")));
    };
    Ok(Handoff {
        holder_pid,
        holder_fd,
        _conn: conn,
        waiter_control: fd,
    })
}

/// What the holder says once asked to watch a freeze whose FIFREEZE just
/// returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Watching {
    /// Its waiter waits for the thaw: this thread (id, start time).
    Thread(u32, u64),
    /// A thaw let its waiter through already: another tool thawed it.
    Ended,
    /// No waiter can tell (a read-only mount, no directory to wait in).
    Unknown,
}

/// How long a probe may take in all, holder start included: past it QUERY
/// fails rather than guess.
const PROBE_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Asks the holder (started when none runs) whether the filesystem of
/// `dir_fd`, a directory on it, is frozen: it keeps one waiter per
/// superblock, reused while the filesystem stays frozen. A holder that
/// does not answer within [`PROBE_LIMIT`] (stopped, stalled), or cannot
/// tell in time, is an error: never "not frozen" without the kernel's word.
/// What it found: `Frozen`, `Thawed` or `CannotTell` (a read-only mount).
pub(crate) fn ask_whether_frozen(
    dir: &StateDir,
    exe: &Path,
    device: Device,
    dir_fd: BorrowedFd<'_>,
) -> Result<ProbeAnswer> {
    let started = std::time::Instant::now();
    let request = Request::Probe { device }.encode();
    let ask = |conn: &ParentOnlyFd| {
        let left = PROBE_LIMIT.saturating_sub(started.elapsed());
        send(conn, exe, &request, &[dir_fd]).and_then(|()| receive_within(conn, exe, left))
    };
    let mut said = match connect_running(dir)? {
        Some(conn) => match ask(&conn) {
            Ok(answer) => answer,
            // It was exiting as we connected: start anew.
            Err(_) if started.elapsed() < std::time::Duration::from_millis(200) => {
                ask(&connect_or_start(dir, exe)?)?
            }
            Err(e) => return Err(e),
        },
        None => ask(&connect_or_start(dir, exe)?)?,
    };
    // Not settled within the holder's short look (slow I/O): it kept the
    // waiter, so asking again looks at the same one, up to the limit.
    let mut answer = Answer::parse(&said);
    while answer == Some(Answer::Probe(ProbeAnswer::Unknown)) && started.elapsed() < PROBE_LIMIT {
        said = ask(&connect_or_start(dir, exe)?)?;
        answer = Answer::parse(&said);
    }
    match answer {
        Some(Answer::Probe(
            found @ (ProbeAnswer::Frozen | ProbeAnswer::Thawed | ProbeAnswer::CannotTell),
        )) => Ok(found),
        _ => Err(unavailable(
            exe,
            format!("the holder could not tell whether it is frozen ({said})"),
        )),
    }
}

/// Sends one request with its fds.
pub(crate) fn send(
    conn: &ParentOnlyFd,
    exe: &Path,
    request: &str,
    fds: &[BorrowedFd<'_>],
) -> Result<()> {
    fd_passing::send_with_fds(conn, request.as_bytes(), fds)
        .map_err(|e| unavailable(exe, format!("sending to the holder: {e}")))
}

/// Reads the holder's answer, trimmed, and the fd that came with it.
pub(crate) fn receive_with_fd(
    conn: &ParentOnlyFd,
    exe: &Path,
) -> Result<(String, Option<OwnedFd>)> {
    receive_answer(
        conn,
        exe,
        std::time::Duration::from_secs(ANSWER_TIMEOUT_S as u64),
    )
}

/// Reads an answer that may take up to `wait`.
pub(crate) fn receive_within(
    conn: &ParentOnlyFd,
    exe: &Path,
    wait: std::time::Duration,
) -> Result<String> {
    receive_answer(conn, exe, wait).map(|(answer, _)| answer)
}

/// How long a holder may stay silent before `/proc` is asked whether it
/// still runs: a live one answers within microseconds, and reading its
/// `/proc` entry costs more than the rest of a QUERY.
const SILENCE_BEFORE_CHECK: std::time::Duration = std::time::Duration::from_millis(20);

/// Waits up to `wait` for the holder's answer. A holder killed while one of
/// its waiters waits in the kernel cannot finish exiting before the thaw:
/// its socket still takes requests, but nobody answers them. So a holder
/// silent for [`SILENCE_BEFORE_CHECK`] is looked at, and one that no longer
/// runs is an error at once (the callers then start a new one).
fn receive_answer(
    conn: &ParentOnlyFd,
    exe: &Path,
    wait: std::time::Duration,
) -> Result<(String, Option<OwnedFd>)> {
    let set_timeout = |timeout: std::time::Duration| {
        rustix::net::sockopt::set_socket_timeout(
            conn,
            rustix::net::sockopt::Timeout::Recv,
            Some(timeout),
        )
        .map_err(|e| Error::os("socket timeout", e))
    };
    let mut answer = [0u8; 8192];
    let first = wait.min(SILENCE_BEFORE_CHECK);
    set_timeout(first)?;
    let mut received = fd_passing::recv_with_fd(conn, &mut answer);
    let silent =
        |r: &std::io::Result<_>| matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
    if silent(&received) && wait > first {
        if !peer_alive(conn) {
            return Err(unavailable(exe, "the holder no longer runs"));
        }
        set_timeout(wait - first)?;
        received = fd_passing::recv_with_fd(conn, &mut answer);
    }
    let (bytes, fd) =
        received.map_err(|e| unavailable(exe, format!("no answer from the holder: {e}")))?;
    if bytes == 0 {
        return Err(unavailable(exe, "the holder closed the connection"));
    }
    let text = OsStr::from_bytes(&answer[..bytes])
        .to_string_lossy()
        .trim()
        .to_string();
    Ok((text, fd))
}
