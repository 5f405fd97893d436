//! The warden: what keeps a deadline when the holder cannot.
//!
//! A holder killed while one of its waiters waits in the kernel cannot
//! finish exiting before the thaw, so neither its parent nor systemd learns
//! that it died; a stopped (SIGSTOP) or stalled holder keeps nothing
//! either. The warden, `freezefs-holder --warden DIR [--systemd]`, is a
//! second process the holder starts beside itself, in a cgroup of its own
//! (`freezefs.warden`), that holds no waiter and so dies cleanly:
//!
//! - every [`LOOK_EVERY`] while anything is on record, it ends each freeze
//!   past its deadline by [`GRACE_NS`] (the holder's own timer fires first
//!   when it can), with the kernel's word that it is still the recorded
//!   freeze, and runs the thaw hooks it is owed when its holder is dead;
//! - without systemd, when a freeze's holder is dead it starts a new holder,
//!   which adopts the records (watches them again, re-arms their deadlines);
//!   under systemd, `Restart=always` does that once the dead one is gone;
//! - it exits once nothing has been on record for [`IDLE_EXIT`].
//!
//! One warden per state directory: it holds [`client::WARDEN_LOCK_NAME`] for its life.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::holder::client;
use crate::holder::life::{holder_lives, kill_orphaned_holds, owed_hooks, reopen_mount, settle_in};
use crate::hooks;
use crate::keep::end::{Ending, end_if_over};
use crate::os::{process, syscalls};
use crate::store::record::{Phase, Record};
use crate::store::state_dir::StateDir;

/// The cgroup (v2) a warden moves into.
const WARDEN_CGROUP: &str = "freezefs.warden";
/// How often it looks at the records.
const LOOK_EVERY: Duration = Duration::from_millis(100);
/// How long past a deadline it leaves the thaw to the holder.
const GRACE_NS: u64 = 250_000_000;
/// How long it stays once nothing is on record: like its holder, it goes
/// soon after the last freeze, and the next one starts it again.
const IDLE_EXIT: Duration = Duration::from_millis(300);

/// Thaw hook runs under way: the warden does not exit while one runs.
static HOOK_RUNS: AtomicUsize = AtomicUsize::new(0);

/// Entry point of `freezefs-holder --warden DIR [--systemd]`.
pub(crate) fn main(dir_path: &Path, systemd: bool) -> i32 {
    syscalls::ignore_signal(libc::SIGPIPE);
    syscalls::ignore_signal(libc::SIGHUP);
    syscalls::unblock_all_signals();
    settle_in(false, WARDEN_CGROUP);
    // fd 3 is a spare copy of fd 4 (see client::start_warden).
    drop(syscalls::take_inherited_fd(3));
    let Ok(dir) = StateDir::adopt(dir_path, syscalls::take_inherited_fd(4)) else {
        return 1;
    };
    let Ok(Some(_one_warden)) = dir.try_lock_named(client::WARDEN_LOCK_NAME) else {
        return 0;
    };
    let dir = Arc::new(dir);
    let exe = std::fs::read_link("/proc/self/exe").ok();
    let mut last_busy = Instant::now();
    loop {
        std::thread::sleep(LOOK_EVERY);
        let records: Vec<Record> = dir
            .recorded_devices()
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| dir.read(d).ok().flatten())
            .collect();
        if records.is_empty() {
            if last_busy.elapsed() >= IDLE_EXIT && HOOK_RUNS.load(Ordering::Acquire) == 0 {
                return 0;
            }
            continue;
        }
        last_busy = Instant::now();
        let now = process::now_boot_ns();
        let mut orphaned = false;
        for record in &records {
            // A stopped holder is not dead: it runs the hooks it owes once it goes on.
            let holder_dead = !holder_lives(record);
            orphaned |= holder_dead && record.phase != Phase::Freezing;
            if record.deadline_boot_ns.is_some_and(|d| now >= d + GRACE_NS) {
                end_overdue(&dir, record, holder_dead);
            }
        }
        if orphaned && !systemd {
            if let Some(exe) = &exe {
                let _ = client::ensure_holder(&dir, exe);
            }
        }
    }
}

/// Ends a freeze past its deadline that its holder did not end, through an
/// fd of our own on its mount; the thaw hooks it is owed run on a thread of
/// their own when no living holder will run them.
fn end_overdue(dir: &Arc<StateDir>, record: &Record, holder_dead: bool) {
    let Some(mount_fd) = reopen_mount(record) else {
        return;
    };
    let ended = end_if_over(
        dir,
        record.device,
        record.generation,
        std::os::fd::AsFd::as_fd(&mount_fd),
        false,
        false,
    );
    if !matches!(ended, Ok(Ending::Ended)) || !holder_dead {
        return;
    }
    kill_orphaned_holds(record);
    let Some((owed, target)) = owed_hooks(record) else {
        return;
    };
    let Ok(Some(end)) = dir.read_ended(record.device) else {
        return;
    };
    let Some(reason) = end
        .ended
        .filter(|_| end.generation == record.generation)
        .map(|e| e.reason.name())
    else {
        return;
    };
    HOOK_RUNS.fetch_add(1, Ordering::AcqRel);
    let started = std::thread::Builder::new()
        .name("freezefs-hooks".into())
        .spawn(move || {
            hooks::run_thaw(&owed, &[target], reason);
            HOOK_RUNS.fetch_sub(1, Ordering::AcqRel);
        });
    if started.is_err() {
        HOOK_RUNS.fetch_sub(1, Ordering::AcqRel);
    }
}
