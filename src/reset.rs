//! Reset the timeout of a frozen filesystem (the 2008 Linux patch's
//! `FIFREEZE_RESET_TIMEOUT`): the same timeout rules, counted from now.
//!
//! Only the record changes; the helper thread and the holder follow it
//! through inotify, as they follow every record.

use std::path::Path;

use crate::error::{Error, Result};
use crate::events::{self, Kind};
use crate::freezer::{Freezer, is_stale};
use crate::process::now_boot_ns;
use crate::record::Phase;
use crate::state::StateDir;
use crate::timeout::Timeout;

impl Freezer {
    /// Gives the freeze of the filesystem mounted at `path` a new timeout,
    /// counted from now (`Timeout::Never` removes the deadline).
    /// [`Error::ResetNotFrozen`] (`EINVAL`) when it is not frozen.
    pub fn reset_timeout(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        let path = path.as_ref();
        self.reset_at(path, timeout)
            .inspect_err(|e| events::failed(path, e))
    }

    fn reset_at(&self, path: &Path, timeout: Timeout) -> Result<()> {
        let (target, mount) = self.filesystem(path)?;
        let timeout_s = timeout.resolve(&self.sysconfigtab)?;
        let not_frozen = || Error::ResetNotFrozen(path.to_path_buf());
        // A stale record is ended here, and then it is not frozen.
        self.live_record(mount.device, &target)?
            .ok_or_else(not_frozen)?;
        let dir = StateDir::open(&self.state_dir, false)?.ok_or_else(not_frozen)?;
        let _lock = dir.lock(mount.device)?;
        let mut record = dir.read(mount.device)?.ok_or_else(not_frozen)?;
        if record.phase != Phase::Frozen || is_stale(&record) {
            return Err(not_frozen());
        }
        record.timeout_s = timeout_s;
        record.deadline_boot_ns = timeout_s.map(|s| now_boot_ns() + u64::from(s) * 1_000_000_000);
        dir.write(&record)?;
        events::about_record(Kind::Reset, &record, "timeout reset, counted from now");
        Ok(())
    }
}
