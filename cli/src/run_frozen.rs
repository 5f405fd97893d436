//! `freezefs [-t S] [-C DIR] MOUNT... -- CMD [ARGS...]`: freeze, run CMD,
//! thaw when it exits, and exit with its status only if every freeze held
//! throughout, by the kernel's word (else 3). Like env(1) and timeout(1):
//! 125 when freezefs fails (nothing frozen), 126 when CMD cannot run, 127
//! when it is not found.

use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::process::Command;

use freezefs::{Freezer, Timeout};

use crate::command;
use crate::exit::{FAILED, NOT_HELD};
use crate::messages::{self, Action};
use crate::relay::Relay;

/// What to run, and where.
pub struct Cmd {
    pub program: OsString,
    pub args: Vec<OsString>,
    pub dir: PathBuf,
}

fn say(text: &str) {
    eprintln!("freezefs: {text}");
}

/// The superblock a path, or an open fd, lies on; `None` when it names no
/// filesystem the freezer can tell (a pipe, a terminal).
fn device_of_path(freezer: &Freezer, path: &Path) -> Option<freezefs::Device> {
    let mount = freezefs::mount_point_of(path).ok()?;
    freezer.status(mount).ok().map(|s| s.device)
}

fn device_of_fd(freezer: &Freezer, fd: BorrowedFd<'_>) -> Option<freezefs::Device> {
    // Its type alone: asking for timestamps would make the file's next
    // change take a fine-grained one (see clippy.toml).
    let st = rustix::fs::statx(
        fd,
        c"",
        rustix::fs::AtFlags::EMPTY_PATH,
        rustix::fs::StatxFlags::TYPE,
    )
    .ok()?;
    let kind = rustix::fs::FileType::from_raw_mode(u32::from(st.stx_mode));
    if !kind.is_file() && !kind.is_dir() {
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
    let (stdout, stderr) = (std::io::stdout(), std::io::stderr());
    for (fd, name) in [
        (stdout.as_fd(), "standard output"),
        (stderr.as_fd(), "standard error"),
    ] {
        if let Some(m) = on_frozen(device_of_fd(freezer, fd)) {
            return Err(format!(
                "{name} is written to {m}, which is about to be frozen; redirect it elsewhere"
            ));
        }
    }
    Ok(())
}

/// How a freeze that did not hold ended, in one line.
fn how_it_ended(run: &freezefs::HeldThroughout) -> String {
    if let (Some(broken), None) = (&run.hold_broken, &run.ended) {
        return format!(
            "{}: {}",
            run.mount_point.display(),
            messages::hold_broken_text(&broken.hook, &broken.why, broken.ended_at, broken.held_for)
        );
    }
    let Some(last) = &run.ended else {
        return format!(
            "{}: the freeze ended before the command did",
            run.mount_point.display()
        );
    };
    let how = last.reason.describe();
    let at = messages::iso_utc(last.ended_at);
    format!(
        "{}: the freeze ended at {at}, before the command did: {how}; the snapshot is not consistent",
        run.mount_point.display()
    )
}

/// The whole command: its exit status.
pub fn run(mounts: &[PathBuf], timeout: Timeout, verbose: bool, cmd: Cmd) -> i32 {
    let freezer = Freezer::from_env();
    let exe = match command::find(&cmd.program) {
        Ok(exe) => exe,
        Err(cannot) => {
            say(&cannot.message);
            return cannot.status;
        }
    };
    if let Err(why) = refuse_deadlocks(&freezer, mounts, &exe, &cmd) {
        say(&why);
        return FAILED;
    }
    // Caught before the freeze: one that comes while freezing is passed on
    // to the command once it runs.
    let mut relay = Relay::catch().ok();
    let mut started: Option<Result<i32, std::io::Error>> = None;
    let run = freezer.run_frozen(mounts, timeout, || {
        let spawned = Command::new(&exe)
            .args(&cmd.args)
            .current_dir(&cmd.dir)
            .spawn();
        started = Some(spawned.and_then(|mut child| {
            let status = match relay.take() {
                Some(relay) => relay.wait(&mut child),
                None => child.wait(),
            };
            status.map(crate::exit::code_of)
        }));
    });
    let run = match run {
        Ok(run) => run,
        Err(e) => {
            let first = mounts
                .first()
                .map(PathBuf::as_path)
                .unwrap_or(Path::new(""));
            messages::complain("freezefs", Action::Freeze, first, &e);
            return FAILED;
        }
    };
    let status = match started {
        Some(Ok(status)) => status,
        Some(Err(e)) => {
            say(&format!("{}: {e}", exe.display()));
            return command::start_failure(&e);
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
            if let (Some(broken), Some(_)) = (&freeze.hold_broken, &freeze.ended) {
                say(&format!(
                    "{}: {}",
                    freeze.mount_point.display(),
                    messages::hold_broken_text(
                        &broken.hook,
                        &broken.why,
                        broken.ended_at,
                        broken.held_for
                    )
                ));
            }
        }
    }
    if held { status } else { NOT_HELD }
}
