//! The prober: one thread that goes round every watched filesystem when
//! told, asking the kernel of each (DESIGN §9) whether it is frozen: one
//! `unlinkat` of a name no file has, which returns at once on a thawed
//! filesystem and waits for the thaw on a frozen one. It opens each mount
//! root only for its probe, so that it never holds a filesystem busy.
//!
//! A probe that waits cannot be taken back: the guard retires the thread
//! as that freeze's waiter (it returns, and exits, when a thaw lets it
//! through) and starts another prober for the rest.

use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Mutex};

use rustix::event::EventfdFlags;
use rustix::fs::{AtFlags, Mode, OFlags, StatxFlags};
use rustix::io::Errno;

use crate::host_guard::watched::Watched;
use crate::keep::kernel_truth::waits_for_thaw;
use crate::os::fork::lock;
use crate::os::process::now_boot_ns;
use crate::os::syscalls;

/// The probe that is under way: which filesystem, since when, and the
/// directory it waits in (shared, so that a retired probe's directory
/// stays open for FITHAW).
#[derive(Clone)]
pub(crate) struct InFlight {
    round: Arc<Vec<Watched>>,
    index: usize,
    pub(crate) began_boot_ns: u64,
    pub(crate) root: Arc<OwnedFd>,
}

impl InFlight {
    /// The filesystem it probes.
    pub(crate) fn watched(&self) -> &Watched {
        &self.round[self.index]
    }
}

/// What the thread shares with the guard.
struct Shared {
    /// The thread's id, once it runs (0 before).
    tid: AtomicI32,
    /// The filesystems of the next round.
    round: Mutex<Arc<Vec<Watched>>>,
    /// The probe under way. Taken by the thread when it returns, under the
    /// same lock the guard retires it under: one of the two comes first.
    in_flight: Mutex<Option<InFlight>>,
    /// True between rounds.
    idle: AtomicBool,
    /// Set by the guard: the thread's probe waits for a thaw; it exits
    /// once let through.
    retired: AtomicBool,
    /// Set by a retired thread once a thaw let it through.
    released: AtomicBool,
}

/// A prober thread, and its go signal (an eventfd).
pub(crate) struct Prober {
    shared: Arc<Shared>,
    go: OwnedFd,
}

/// A retired probe: a thread that waits for the thaw of one freeze.
pub(crate) struct Waiting {
    shared: Arc<Shared>,
    pub(crate) probe: InFlight,
}

impl Waiting {
    /// True once a thaw let it through.
    pub(crate) fn released(&self) -> bool {
        self.shared.released.load(Ordering::Acquire)
    }

    /// Whether its thread still waits for the thaw, in the kernel's word:
    /// read just before a FITHAW, so that a thaw and refreeze by another
    /// tool a moment ago is never thawed as the old freeze.
    pub(crate) fn still_waits(&self) -> bool {
        !self.released() && thread_waits(&self.shared)
    }
}

fn thread_waits(shared: &Shared) -> bool {
    let tid = shared.tid.load(Ordering::Acquire);
    tid != 0 && waits_for_thaw(&format!("/proc/self/task/{tid}"))
}

impl Prober {
    /// Starts a prober thread, idle; `name` is the name each probe unlinks.
    pub(crate) fn start(name: Arc<str>) -> std::io::Result<Prober> {
        let go = rustix::event::eventfd(0, EventfdFlags::CLOEXEC)?;
        let theirs_go = rustix::io::fcntl_dupfd_cloexec(&go, 0)?;
        let shared = Arc::new(Shared {
            tid: AtomicI32::new(0),
            round: Mutex::new(Arc::new(Vec::new())),
            in_flight: Mutex::new(None),
            idle: AtomicBool::new(true),
            retired: AtomicBool::new(false),
            released: AtomicBool::new(false),
        });
        let theirs = Arc::clone(&shared);
        let _blocked = syscalls::AllSignalsBlocked::new();
        std::thread::Builder::new()
            .name("freezefs-prober".into())
            .stack_size(64 * 1024)
            .spawn(move || go_round(&theirs, &theirs_go, &name))?;
        Ok(Prober { shared, go })
    }

    /// True between rounds.
    pub(crate) fn idle(&self) -> bool {
        self.shared.idle.load(Ordering::Acquire)
    }

    /// Starts a round of `watched`; only when [`Prober::idle`].
    pub(crate) fn go(&self, watched: Arc<Vec<Watched>>) {
        *lock(&self.shared.round) = watched;
        self.shared.idle.store(false, Ordering::Release);
        let _ = rustix::io::write(&self.go, &1u64.to_ne_bytes());
    }

    /// The probe under way, if its thread waits for a thaw and has waited
    /// since before `began_before` (a probe that has just started may not
    /// have reached the wait yet; slow I/O is not a freeze).
    pub(crate) fn stuck(&self, began_before: u64) -> Option<InFlight> {
        let probe = lock(&self.shared.in_flight).clone()?;
        (probe.began_boot_ns < began_before && thread_waits(&self.shared)).then_some(probe)
    }

    /// Makes the thread the waiter of `probe`'s freeze, if that probe is
    /// still the one under way; else gives the prober back.
    pub(crate) fn retire(self, probe: &InFlight) -> Result<Waiting, Prober> {
        let in_flight = lock(&self.shared.in_flight);
        let same = in_flight
            .as_ref()
            .is_some_and(|p| Arc::ptr_eq(&p.root, &probe.root));
        if !same {
            drop(in_flight);
            return Err(self);
        }
        self.shared.retired.store(true, Ordering::Release);
        drop(in_flight);
        Ok(Waiting {
            shared: self.shared,
            probe: probe.clone(),
        })
    }
}

/// The thread: waits for go, probes each filesystem of the round, goes
/// idle; exits when retired and let through, or when the guard is gone.
fn go_round(shared: &Shared, go: &OwnedFd, name: &str) {
    shared.tid.store(
        rustix::thread::gettid().as_raw_nonzero().get(),
        Ordering::Release,
    );
    let mut buf = [0u8; 8];
    loop {
        match rustix::io::read(go, &mut buf) {
            Ok(8) => {}
            Err(Errno::INTR) => continue,
            _ => return,
        }
        let round = Arc::clone(&lock(&shared.round));
        for (index, watched) in round.iter().enumerate() {
            let Some(root) = open_root(watched) else {
                continue;
            };
            let root = Arc::new(root);
            *lock(&shared.in_flight) = Some(InFlight {
                round: Arc::clone(&round),
                index,
                began_boot_ns: now_boot_ns(),
                root: Arc::clone(&root),
            });
            wait_if_frozen(&root, name);
            let taken = lock(&shared.in_flight).take();
            drop(taken);
            if shared.retired.load(Ordering::Acquire) {
                shared.released.store(true, Ordering::Release);
                return;
            }
        }
        shared.idle.store(true, Ordering::Release);
    }
}

/// The root directory of `watched`, opened read-only (which changes
/// nothing, frozen or not), if the mount point still reaches that mount.
fn open_root(watched: &Watched) -> Option<OwnedFd> {
    let fd = rustix::fs::open(
        &watched.mount_point,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC | OFlags::NONBLOCK | OFlags::NOCTTY,
        Mode::empty(),
    )
    .ok()?;
    let st = rustix::fs::statx(&fd, "", AtFlags::EMPTY_PATH, StatxFlags::MNT_ID).ok()?;
    (st.stx_mnt_id == watched.mount_id).then_some(fd)
}

/// One `unlinkat` of `name` in `root`: at once when thawed, after the thaw
/// when frozen. It removes nothing (no file has the name) and changes
/// nothing; EROFS and the like return at once.
fn wait_if_frozen(root: &OwnedFd, name: &str) {
    while rustix::fs::unlinkat(root.as_fd(), name, AtFlags::empty()) == Err(Errno::INTR) {}
}
