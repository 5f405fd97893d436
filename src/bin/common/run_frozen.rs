//! `freezefs [-t S] [-C DIR] MOUNT... -- CMD [ARGS...]`: freeze, run CMD,
//! thaw when it exits, and exit with its status only if every freeze held
//! throughout, by the kernel's word (else 3). Like env(1) and timeout(1):
//! 125 when freezefs fails (nothing frozen), 126 when CMD cannot run, 127
//! when it is not found.
//!
//! Signal plumbing (blocking SIGINT, SIGTERM and SIGHUP, and a signalfd
//! for them) is raw libc, so this module is allowed `unsafe`.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use freezefs::{Freezer, Timeout};

/// freezefs itself failed; nothing is frozen.
pub(crate) const FAILED: i32 = 125;
/// CMD was found but cannot run.
pub(crate) const CANNOT_RUN: i32 = 126;
/// CMD was not found.
pub(crate) const NOT_FOUND: i32 = 127;
/// CMD ran, but a freeze ended before it did.
pub(crate) const NOT_HELD: i32 = 3;

/// What to run, and where.
pub(crate) struct Cmd {
    pub(crate) program: OsString,
    pub(crate) args: Vec<OsString>,
    pub(crate) dir: PathBuf,
}

fn say(text: &str) {
    eprintln!("freezefs: {text}");
}

/// CMD's executable: a name with a slash as it is, else the first match in
/// `PATH`. `Err(status)` when it cannot be run.
fn executable(program: &OsString) -> Result<PathBuf, i32> {
    let name = Path::new(program);
    let found = if program.as_encoded_bytes().contains(&b'/') {
        name.exists().then(|| name.to_path_buf())
    } else {
        std::env::var_os("PATH")
            .unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into())
            .as_encoded_bytes()
            .split(|&b| b == b':')
            .map(|dir| Path::new(std::ffi::OsStr::from_bytes(dir)).join(name))
            .find(|p| p.is_file())
    };
    let Some(path) = found else {
        say(&format!("{}: command not found", name.display()));
        return Err(NOT_FOUND);
    };
    let runnable =
        std::fs::metadata(&path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if !runnable {
        say(&format!("{}: not an executable file", path.display()));
        return Err(CANNOT_RUN);
    }
    Ok(path)
}

/// The superblock a path, or an open fd, lies on; `None` when it names no
/// filesystem the freezer can tell (a pipe, a terminal).
fn device_of_path(freezer: &Freezer, path: &Path) -> Option<freezefs::Device> {
    let mount = freezefs::mount_point_of(path).ok()?;
    freezer.status(mount).ok().map(|s| s.device)
}

fn device_of_fd(freezer: &Freezer, fd: i32) -> Option<freezefs::Device> {
    // SAFETY: borrowed for the call only; 1 and 2 stay open meanwhile.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let st = rustix::fs::fstat(fd).ok()?;
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFREG && kind != libc::S_IFDIR {
        return None;
    }
    freezer.status_fd(fd).ok().map(|s| s.device)
}

/// Refuses, before anything is frozen, what would deadlock on the frozen
/// filesystems: CMD's executable or working directory on one of them, or
/// freezefs's own stdout or stderr written there.
fn refuse_deadlocks(
    freezer: &Freezer,
    mounts: &[PathBuf],
    exe: &Path,
    cmd: &Cmd,
) -> Result<(), String> {
    let frozen: Vec<(freezefs::Device, &PathBuf)> = mounts
        .iter()
        .filter_map(|m| Some((freezer.status(m).ok()?.device, m)))
        .collect();
    let on_frozen = |device: Option<freezefs::Device>| {
        device.and_then(|d| {
            frozen
                .iter()
                .find(|(f, _)| *f == d)
                .map(|(_, m)| m.display())
        })
    };
    if let Some(m) = on_frozen(device_of_path(freezer, exe)) {
        return Err(format!(
            "{}: the command lies on {m}, which is about to be frozen; run it from another filesystem",
            exe.display()
        ));
    }
    if let Some(m) = on_frozen(device_of_path(freezer, &cmd.dir)) {
        return Err(format!(
            "{}: the working directory lies on {m}, which is about to be frozen; choose another with -C",
            cmd.dir.display()
        ));
    }
    for (fd, name) in [(1, "standard output"), (2, "standard error")] {
        if let Some(m) = on_frozen(device_of_fd(freezer, fd)) {
            return Err(format!(
                "{name} is written to {m}, which is about to be frozen; redirect it elsewhere"
            ));
        }
    }
    Ok(())
}

/// Blocks SIGINT, SIGTERM and SIGHUP here and returns a signalfd for them:
/// they are passed on to CMD, and the thaw follows its exit. The child
/// starts with an empty mask (see `run`).
fn relayed_signals() -> Option<OwnedFd> {
    // SAFETY: sigset_t is plain data initialised by sigemptyset/sigaddset;
    // pthread_sigmask and signalfd only read it; the new fd is ours alone.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
            libc::sigaddset(&mut set, signal);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC);
        (fd >= 0).then(|| OwnedFd::from_raw_fd(fd))
    }
}

/// Runs CMD, passing on the signals that come, until it exits: its exit
/// status as a shell reports it (128 + N for a signal).
fn run_relaying(child: &mut std::process::Child, signals: Option<&OwnedFd>) -> i32 {
    let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok();
    if let (Some(signals), Some(pidfd)) = (signals, &pidfd) {
        loop {
            let mut fds = [
                rustix::event::PollFd::new(pidfd, rustix::event::PollFlags::IN),
                rustix::event::PollFd::new(signals, rustix::event::PollFlags::IN),
            ];
            match rustix::event::poll(&mut fds, None) {
                Err(rustix::io::Errno::INTR) => continue,
                Err(_) => break,
                Ok(_) => {}
            }
            if !fds[1].revents().is_empty() {
                // struct signalfd_siginfo: ssi_signo first, 128 bytes.
                let mut info = [0u8; 128];
                if let Ok(128) = rustix::io::read(signals, &mut info) {
                    let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]);
                    // SAFETY: sends a signal to our own child; no memory.
                    unsafe { libc::kill(child.id() as i32, signo as i32) };
                }
            }
            if !fds[0].revents().is_empty() {
                break;
            }
        }
    }
    match child.wait() {
        Ok(status) => status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)),
        Err(_) => FAILED,
    }
}

/// How a freeze that did not hold ended, in one line.
fn how_it_ended(run: &freezefs::HeldThroughout) -> String {
    let Some(last) = &run.ended else {
        return format!(
            "{}: the freeze ended before the command did",
            run.mount_point.display()
        );
    };
    let how = last.reason.describe();
    let at = super::cli::iso_utc(last.ended_at);
    format!(
        "{}: the freeze ended at {at}, before the command did: {how}; the snapshot is not consistent",
        run.mount_point.display()
    )
}

/// The whole command: its exit status.
pub(crate) fn run(mounts: &[PathBuf], timeout: Timeout, verbose: bool, cmd: Cmd) -> i32 {
    let freezer = Freezer::from_env();
    let exe = match executable(&cmd.program) {
        Ok(exe) => exe,
        Err(status) => return status,
    };
    if let Err(why) = refuse_deadlocks(&freezer, mounts, &exe, &cmd) {
        say(&why);
        return FAILED;
    }
    let signals = relayed_signals();
    let mut started: Option<Result<i32, std::io::Error>> = None;
    let run = freezer.run_frozen(mounts, timeout, || {
        let mut command = Command::new(&exe);
        command.args(&cmd.args).current_dir(&cmd.dir);
        // SAFETY: runs in the child between fork and exec, and calls only
        // sigemptyset and pthread_sigmask, both async-signal-safe: the
        // command starts with no signal blocked, so that what we pass on
        // reaches it.
        unsafe {
            command.pre_exec(|| {
                let mut none: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut none);
                libc::pthread_sigmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
                Ok(())
            });
        }
        let spawned = command.spawn();
        started = Some(spawned.map(|mut child| run_relaying(&mut child, signals.as_ref())));
    });
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            let first = mounts
                .first()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new(""));
            super::cli::complain("freezefs", super::cli::Action::Freeze, first, &e);
            return FAILED;
        }
    };
    let status = match started {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            say(&format!("{}: {e}", exe.display()));
            return if e.kind() == std::io::ErrorKind::NotFound {
                NOT_FOUND
            } else {
                CANNOT_RUN
            };
        }
        None => FAILED,
    };
    let mut held = true;
    for freeze in &run.freezes {
        if freeze.held {
            if verbose {
                say(&format!(
                    "{}: held until the command ended",
                    freeze.mount_point.display()
                ));
            }
        } else {
            held = false;
            say(&how_it_ended(freeze));
        }
    }
    if held { status } else { NOT_HELD }
}
