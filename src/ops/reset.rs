//! Reset the timeout of a frozen filesystem (the 2008 Linux patch's
//! `FIFREEZE_RESET_TIMEOUT`): the same timeout rules, counted from now.
//!
//! Only the record changes. The helper threads follow it through inotify;
//! the holder, which listens to the state directory only for freezes
//! without a waiting waiter, is told to look.

use crate::error::{Error, Result};
use crate::events::{self, Kind};
use crate::holder::client;
use crate::ops::query;
use crate::ops::resolve::Resolved;
use crate::ops::settings::Settings;
use crate::os::process::now_boot_ns;
use crate::store::liveness;
use crate::store::record::Phase;
use crate::store::state_dir::StateDir;
use crate::timeout::Timeout;

/// Rewrites the record of the freeze `named` names with a deadline counted
/// from now; [`Error::ResetNotFrozen`] when there is no live freeze.
pub(crate) fn reset_timeout(
    settings: &Settings,
    named: &Resolved,
    timeout: Timeout,
    kind: Kind,
) -> Result<()> {
    let device = named.device();
    let timeout_s = timeout.resolve(&settings.sysconfigtab)?;
    let not_frozen = || Error::ResetNotFrozen(named.given.clone());
    // A freeze that is over is ended here, and then it is not frozen.
    query::live_record(settings, named)?.ok_or_else(not_frozen)?;
    let dir = StateDir::open(&settings.state_dir, false)?.ok_or_else(not_frozen)?;
    let lock = dir.lock(device)?;
    let mut record = dir.read(device)?.ok_or_else(not_frozen)?;
    if record.phase != Phase::Frozen || liveness::is_over(&record) {
        return Err(not_frozen());
    }
    record.timeout_s = timeout_s;
    record.deadline_boot_ns = timeout_s.map(|s| now_boot_ns() + u64::from(s) * 1_000_000_000);
    dir.write(&record)?;
    // After the lock, which the holder's review may need at once.
    drop(lock);
    client::ask_to_look(&dir);
    let reason = match kind {
        Kind::Renewed => "timeout renewed by its keeper, counted from now",
        _ => "timeout reset, counted from now",
    };
    events::about_record(kind, &record, reason);
    Ok(())
}
