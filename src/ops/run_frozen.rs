//! Run something while filesystems are frozen, and learn whether every
//! freeze held from before it started until it ended, in the kernel's word:
//! the one-command snapshot (`freezefs MOUNT... -- CMD`).

use std::path::{Path, PathBuf};

use crate::end_reason::EndReason;
use crate::error::Result;
use crate::ops::freeze;
use crate::ops::freeze_guard::FreezeGuard;
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::ops::status::{self, HoldBreak, LastFreeze};
use crate::os::mounts::Device;
use crate::timeout::Timeout;

/// What [`Freezer::run_frozen`] returns: the body's result, and how each
/// freeze fared under it.
#[derive(Debug)]
pub struct RunFrozen<R> {
    /// What the body returned.
    pub output: R,
    /// One per filesystem, in the order given.
    pub freezes: Vec<HeldThroughout>,
}

/// Whether one freeze held while the body ran.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldThroughout {
    /// The mount point as given.
    pub mount_point: PathBuf,
    /// True when the freeze held from before the body started until it
    /// ended: its watcher still waited in the kernel, and this call's thaw
    /// ended it.
    pub held: bool,
    /// When it did not hold: how and when it ended (its timeout, another
    /// tool's thaw, its holder stopped), when remembered.
    pub ended: Option<LastFreeze>,
    /// A hold hook that ended while the freeze was in force: then `held`
    /// is false, even when the freeze itself lasted.
    pub hold_broken: Option<HoldBreak>,
}

impl<R> RunFrozen<R> {
    /// True when every freeze held throughout.
    pub fn all_held(&self) -> bool {
        self.freezes.iter().all(|f| f.held)
    }
}

/// Freezes `paths` all or nothing (hooks included), runs `body`, thaws as
/// soon as it returns, and tells whether each freeze held throughout.
pub(crate) fn run_frozen<P: AsRef<Path>, R>(
    settings: &Settings,
    paths: &[P],
    timeout: Timeout,
    body: impl FnOnce() -> R,
) -> Result<RunFrozen<R>> {
    let named: Vec<Resolved> = paths
        .iter()
        .map(|p| Resolved::path_to_change(p.as_ref()))
        .collect::<Result<_>>()?;
    let names: Vec<(Device, PathBuf)> = named
        .iter()
        .zip(paths)
        .map(|(n, p)| (n.device(), p.as_ref().to_path_buf()))
        .collect();
    let frozen = freeze::freeze_batch(settings, named, timeout)?;
    // freeze_batch gives one freeze per superblock, in its own order: each
    // guard is named by the first path given for its superblock.
    let guards: Vec<FreezeGuard> = frozen
        .into_iter()
        .map(|f| {
            let path = names
                .iter()
                .find(|(device, _)| *device == f.device)
                .map_or_else(PathBuf::new, |(_, p)| p.clone());
            FreezeGuard::new(settings.clone(), &path, f)
        })
        .collect();
    let output = body();
    let freezes = guards
        .into_iter()
        .map(|guard| {
            let mount_point = guard.path().to_path_buf();
            let held = guard.thaw().is_ok();
            let last = (!held)
                .then(|| {
                    let named = Resolved::path(&mount_point).ok()?;
                    status::status(settings, &named).ok()?.last_freeze
                })
                .flatten();
            let hold_broken = last.as_ref().and_then(|l| l.hold_broken.clone());
            // A freeze that lasted, and only its hold broke, did not end early.
            let ended = last.filter(|l| hold_broken.is_none() || l.reason != EndReason::Thawed);
            HeldThroughout {
                mount_point,
                held,
                ended,
                hold_broken,
            }
        })
        .collect();
    Ok(RunFrozen { output, freezes })
}
