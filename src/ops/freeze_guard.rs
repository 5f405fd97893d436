//! A freeze that ends when its guard goes away (RAII), and that only ever
//! ends itself: a guard never thaws a newer freeze made by someone else.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::ops::freeze::Frozen;
use crate::ops::settings::Settings;
use crate::ops::thaw::{Outcome, end_recorded, hold_broken_error};
use crate::os::mounts::Device;
use crate::store::liveness;
use crate::store::state_dir::StateDir;

/// A freeze held by this guard. [`FreezeGuard::thaw`] ends it and tells
/// whether it held to the end; dropping the guard ends it quietly.
///
/// ```no_run
/// use freezefs::{Freezer, Timeout};
///
/// let frozen = Freezer::from_env().freeze_guard("/srv/db", Timeout::Seconds(30))?;
/// // ... take the snapshot ...
/// frozen.thaw()?; // Err(NotFrozen): it timed out meanwhile; the snapshot is not reliable
/// # Ok::<(), freezefs::Error>(())
/// ```
#[must_use = "dropping the guard thaws the filesystem at once"]
pub struct FreezeGuard {
    settings: Settings,
    path: PathBuf,
    device: Device,
    generation: u64,
    mount_fd: Option<OwnedFd>,
}

impl FreezeGuard {
    /// Takes charge of `frozen`, made through `path`.
    pub(crate) fn new(settings: Settings, path: &Path, frozen: Frozen) -> FreezeGuard {
        FreezeGuard {
            settings,
            path: path.to_path_buf(),
            device: frozen.device,
            generation: frozen.generation,
            mount_fd: Some(frozen.mount_fd),
        }
    }

    /// The mount point this guard froze.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while this very freeze still holds (not timed out, not thawed
    /// by anyone, not replaced).
    pub fn is_held(&self) -> Result<bool> {
        let Some(dir) = StateDir::open(&self.settings.state_dir, false)? else {
            return Ok(false);
        };
        Ok(dir
            .read(self.device)?
            .is_some_and(|r| r.generation == self.generation && !liveness::is_over(&r)))
    }

    /// Thaws this freeze. `Err(NotFrozen)` when it had already ended
    /// (timeout, or a thaw elsewhere): whatever ran under it was not
    /// protected to the end.
    pub fn thaw(mut self) -> Result<()> {
        self.end()
    }

    fn end(&mut self) -> Result<()> {
        let Some(mount_fd) = self.mount_fd.take() else {
            return Ok(());
        };
        let not_ours = || Error::NotFrozen(self.path.clone());
        let dir = StateDir::open(&self.settings.state_dir, false)?.ok_or_else(not_ours)?;
        let _lock = dir.lock(self.device)?;
        let record = dir.read(self.device)?.ok_or_else(not_ours)?;
        if record.generation != self.generation {
            return Err(not_ours());
        }
        // Ours: end it, unless it ended otherwise (its deadline, another
        // tool's thaw): then whatever ran under it was not protected.
        match end_recorded(&dir, &record, mount_fd.as_fd(), &self.path)? {
            Some(Outcome::Thawed) => Ok(()),
            Some(Outcome::ThawedHoldBroken(broken)) => Err(hold_broken_error(&self.path, broken)),
            Some(Outcome::EndedBefore) | None => Err(not_ours()),
        }
    }
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        let _ = self.end();
    }
}
