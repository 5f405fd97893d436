//! The holder's answer to a probe: is this filesystem frozen, by whoever?
//! A freeze it keeps answers through its own waiter; any other through a
//! probe thread per superblock, which stays while it waits for a thaw.

use std::collections::HashMap;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Mutex;
use std::time::Duration;

use crate::holder::protocol::ProbeAnswer;
use crate::keep::kernel_truth::{self, Seen, Waiter};
use crate::keep::watch::Watch;
use crate::os::fork::lock;
use crate::os::mounts::Device;

/// How long an answer may wait for a waiter to settle.
const SETTLE_LIMIT: Duration = Duration::from_millis(250);

/// The probe threads: one per superblock while its waiter waits for a
/// thaw, and a parked one for the next probe, once there has been one.
#[derive(Default)]
pub(crate) struct Probers {
    pub(crate) by_device: HashMap<Device, Prober>,
    pub(crate) spare: Option<Prober>,
}

/// A reusable probe thread and the teller's end of its control line.
pub(crate) struct Prober {
    pub(crate) waiter: Waiter,
    teller: OwnedFd,
}

impl Prober {
    pub(crate) fn new() -> Option<Prober> {
        let (thread_end, teller) = kernel_truth::control_line().ok()?;
        Some(Prober {
            waiter: Waiter::reusable(thread_end).ok()?,
            teller,
        })
    }
}

/// Whether the filesystem of `device` is frozen, by whoever: the waiter of a
/// freeze kept here, else the superblock's probe, which stays while it
/// waits. A probe let through goes back to be the spare.
pub(crate) fn look_whether_frozen(
    watches: &Mutex<Vec<Watch>>,
    probes: &mut Probers,
    device: Device,
    dir_fd: &OwnedFd,
) -> ProbeAnswer {
    let kept = lock(watches)
        .iter()
        .filter(|w| w.device == device)
        .find_map(|w| w.waiter.as_ref()?.look());
    if kept == Some(Seen::Frozen) {
        return ProbeAnswer::Frozen;
    }
    let prober = match probes.by_device.remove(&device) {
        Some(p) if p.waiter.look() == Some(Seen::Frozen) => {
            probes.by_device.insert(device, p);
            return ProbeAnswer::Frozen;
        }
        // Let through since, or never settled: a fresh look.
        Some(p) => Some(p),
        None => probes.spare.take(),
    };
    // "failed", not "unknown": asking again would not help.
    let Some(prober) = prober.or_else(Prober::new) else {
        return ProbeAnswer::Failed;
    };
    if prober
        .waiter
        .wait_on(&prober.teller, dir_fd.as_fd())
        .is_err()
    {
        return ProbeAnswer::Failed;
    }
    match prober.waiter.settle(SETTLE_LIMIT) {
        Some(Seen::Frozen) => {
            probes.by_device.insert(device, prober);
            ProbeAnswer::Frozen
        }
        Some(seen) => {
            probes.spare.get_or_insert(prober);
            if seen == Seen::Thawed {
                ProbeAnswer::Thawed
            } else {
                // A read-only mount: the kernel will not make a waiter wait.
                ProbeAnswer::CannotTell
            }
        }
        None => {
            // Neither let through nor waiting for a thaw yet (slow I/O):
            // kept, so that the next probe looks at it again.
            probes.by_device.insert(device, prober);
            ProbeAnswer::Unknown
        }
    }
}
