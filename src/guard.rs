//! A freeze that ends when its guard goes away (RAII), and that only ever
//! ends itself: a guard never thaws a newer freeze made by someone else.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::events;
use crate::freezer::Freezer;
use crate::mounts::Device;
use crate::state::StateDir;
use crate::sys;
use crate::timeout::Timeout;
use crate::timer;

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
    freezer: Freezer,
    path: PathBuf,
    device: Device,
    generation: u64,
    mount_fd: Option<OwnedFd>,
}

impl Freezer {
    /// Freezes like [`Freezer::freeze`] and returns a guard that thaws
    /// this freeze, and only this one, when dropped.
    pub fn freeze_guard(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<FreezeGuard> {
        let path = path.as_ref();
        let frozen = self.freeze_path(path, timeout)?;
        Ok(FreezeGuard {
            freezer: self.clone(),
            path: path.to_path_buf(),
            device: frozen.device,
            generation: frozen.generation,
            mount_fd: Some(frozen.mount_fd),
        })
    }
}

impl FreezeGuard {
    /// The mount point this guard froze.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// True while this very freeze still holds (not timed out, not thawed
    /// by anyone, not replaced).
    pub fn is_held(&self) -> Result<bool> {
        let Some(dir) = StateDir::open(self.freezer.state_dir(), false)? else {
            return Ok(false);
        };
        Ok(dir
            .read(self.device)?
            .is_some_and(|r| r.generation == self.generation && !crate::freezer::is_stale(&r)))
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
        let dir = StateDir::open(self.freezer.state_dir(), false)?.ok_or_else(not_ours)?;
        let _lock = dir.lock(self.device)?;
        let record = dir.read(self.device)?.ok_or_else(not_ours)?;
        if record.generation != self.generation {
            return Err(not_ours());
        }
        // Ours: end it, even if its deadline passed a moment ago.
        dir.mark_thawing(&record)?;
        let thawed = sys::fithaw(&mount_fd);
        dir.remove(self.device)?;
        timer::forget(self.device);
        if thawed.is_ok() {
            events::about_record(events::Kind::Thawed, &record, "thawed by its guard");
        }
        if crate::freezer::is_stale(&record) {
            return Err(not_ours());
        }
        thawed.map_err(|e| Error::os(format!("{}: FITHAW", self.path.display()), e))
    }
}

impl Drop for FreezeGuard {
    fn drop(&mut self) {
        let _ = self.end();
    }
}
