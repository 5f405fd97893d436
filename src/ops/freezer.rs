//! [`Freezer`]: the whole Rust API in one table. Each method checks who
//! calls, resolves what it names and hands over to the operation's own
//! module; a failure is reported as an event on the way out.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use crate::config;
use crate::error::{Error, Result};
use crate::events;
use crate::holds;
use crate::hooks;
use crate::host_guard::guard_loop::{self, GuardStart};
use crate::ops::freeze_guard::FreezeGuard;
use crate::ops::resolve::Resolved;
use crate::ops::run_frozen::{self, RunFrozen};
use crate::ops::settings::Settings;
use crate::ops::status::{Listing, Status};
use crate::ops::{freeze, query, reset, status, thaw};
use crate::policy::{ProtectedNames, require_privilege};
use crate::store::state_dir;
use crate::timeout::Timeout;

/// Freezes, thaws and queries filesystems, keeping shared state in one
/// state directory and reading default timeouts from one sysconfigtab file.
///
/// [`Freezer::from_env`] is what the C API and the free functions use; build
/// one with other paths to keep tests or tools apart from the system state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Freezer {
    settings: Settings,
}

impl Default for Freezer {
    fn default() -> Self {
        Freezer::new()
    }
}

/// Where an fd's failure is reported: it has no path of the caller's.
const AN_FD: &str = "(fd)";

impl Freezer {
    /// `/run/freezefs`, `/etc/sysconfigtab`, `/etc/freezefs/hooks.d` and
    /// `/etc/freezefs/hold.d`, whatever the environment says.
    pub fn new() -> Freezer {
        Freezer {
            settings: Settings {
                state_dir: PathBuf::from(state_dir::RUNDIR),
                sysconfigtab: PathBuf::from(config::SYSCONFIGTAB),
                holder: None,
                protected_names: ProtectedNames::Refuse,
                hooks_dir: PathBuf::from(hooks::HOOKS_DIR),
                hold_dir: PathBuf::from(holds::HOLD_DIR),
                event_tag: None,
            },
        }
    }

    /// The paths in force: `FREEZEFS_RUNDIR`, `FREEZEFS_SYSCONFIGTAB`,
    /// `FREEZEFS_HOOKS_DIR` and `FREEZEFS_HOLD_DIR` when set (ignored under `AT_SECURE`), else the
    /// system ones.
    pub fn from_env() -> Freezer {
        Freezer {
            settings: Settings {
                state_dir: state_dir::rundir_path(),
                sysconfigtab: config::sysconfigtab_path(),
                holder: None,
                protected_names: ProtectedNames::Refuse,
                hooks_dir: hooks::hooks_dir_path(),
                hold_dir: holds::hold_dir_path(),
                event_tag: None,
            },
        }
    }

    /// Uses another state directory.
    pub fn with_state_dir(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.settings.state_dir = path.into();
        self
    }

    /// Reads the default timeout from another file.
    pub fn with_sysconfigtab(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.settings.sysconfigtab = path.into();
        self
    }

    /// Starts this holder executable rather than the one found by default
    /// (`$FREEZEFS_HOLDER`, next to the library, the installed one).
    pub fn with_holder(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.settings.holder = Some(path.into());
        self
    }

    /// Freezes `/`, `/usr` and `/var` (under any of their names) like any
    /// other filesystem instead of refusing them, always with a finite
    /// deadline: the timeout asked for, capped by
    /// `freezefs_protected_max_timeout` in the `vfs:` stanza (60 s by
    /// default); no timeout becomes the cap. A batch that holds one of them
    /// gets the capped deadline for all its members. The filesystem holding
    /// the state directory is still refused ([`Error::HoldsStateDir`]).
    ///
    /// The shim's contract, for raw-ioctl tools whose callers must quiesce
    /// the root disk (hypervisor guest agents); the API and the commands
    /// keep AdvFS's refusal.
    pub fn with_protected_capped(mut self) -> Freezer {
        self.settings.protected_names = ProtectedNames::FreezeCapped;
        self
    }

    /// Runs the freeze and thaw hooks of another directory.
    pub fn with_hooks_dir(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.settings.hooks_dir = path.into();
        self
    }

    /// Runs the hold hooks of another directory.
    pub fn with_hold_dir(mut self, path: impl Into<PathBuf>) -> Freezer {
        self.settings.hold_dir = path.into();
        self
    }

    /// Adds `tag` to every syslog event about the freezes this freezer
    /// makes: their freeze, renewals, resets, thaw and timeout, including
    /// those its holder sends after the caller is gone. `tag` is up to 256
    /// bytes of `key=value` words, separated by single spaces; a key is a
    /// lowercase letter then lowercase letters, digits or `_`, and none of
    /// the event's own keys; a value is letters, digits and `-_.:`. The
    /// consistency-group agent tags its freezes `group=G epoch=E node=N`.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] for any other tag.
    pub fn with_event_tag(mut self, tag: &str) -> Result<Freezer> {
        events::check_tag(tag).map_err(Error::InvalidArgument)?;
        self.settings.event_tag = Some(tag.to_string());
        Ok(self)
    }

    /// The hook directory this freezer runs the hooks of, when it exists.
    pub fn hooks_dir(&self) -> &Path {
        &self.settings.hooks_dir
    }

    /// The holder executable this freezer starts when none is running.
    pub fn holder(&self) -> PathBuf {
        self.settings.holder()
    }

    /// The state directory this freezer uses.
    pub fn state_dir(&self) -> &Path {
        &self.settings.state_dir
    }

    /// The sysconfigtab file this freezer reads.
    pub fn sysconfigtab(&self) -> &Path {
        &self.settings.sysconfigtab
    }

    /// Flushes and freezes the filesystem whose mount point is `path`.
    ///
    /// Errors: see [`Error`]; nothing is left frozen or recorded on error.
    pub fn freeze(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        let path = path.as_ref();
        let named = resolved(path, Resolved::path_to_change(path))?;
        reported(named, |named| {
            freeze::freeze_batch(&self.settings, vec![named], timeout)
        })
        .map(drop)
    }

    /// Freezes the filesystem that `fd` lies on: any fd inside it, as the
    /// kernel's FIFREEZE accepts (the mount-point rule does not apply).
    pub fn freeze_fd(&self, fd: BorrowedFd<'_>, timeout: Timeout) -> Result<()> {
        let named = resolved(Path::new(AN_FD), Resolved::fd(fd))?;
        reported(named, |named| {
            freeze::freeze_batch(&self.settings, vec![named], timeout)
        })
        .map(drop)
    }

    /// Freezes several filesystems all or nothing, under one deadline. Two
    /// names of one filesystem count once; nested mounts freeze deepest
    /// first. On any failure nothing is left frozen and the first failure
    /// is returned.
    pub fn freeze_all<P: AsRef<Path>>(&self, paths: &[P], timeout: Timeout) -> Result<()> {
        require_privilege()
            .and_then(|()| {
                paths
                    .iter()
                    .map(|p| Resolved::path_to_change(p.as_ref()))
                    .collect()
            })
            .and_then(|named| freeze::freeze_batch(&self.settings, named, timeout))
            .map(drop)
            .inspect_err(|e| {
                let first = paths.first().map_or(Path::new(""), |p| p.as_ref());
                events::failed(first, None, e)
            })
    }

    /// [`Freezer::freeze_all`] for fds (any fd inside each filesystem), as
    /// VxFS's `VX_FREEZE_ALL` takes them.
    pub fn freeze_all_fds(&self, fds: &[BorrowedFd<'_>], timeout: Timeout) -> Result<()> {
        require_privilege()
            .and_then(|()| fds.iter().map(|&fd| Resolved::fd(fd)).collect())
            .and_then(|named| freeze::freeze_batch(&self.settings, named, timeout))
            .map(drop)
            .inspect_err(|e| events::failed(Path::new(AN_FD), None, e))
    }

    /// Freezes `paths` all or nothing (hooks included), runs `body`, thaws
    /// as soon as it returns, and tells whether every freeze held from
    /// before `body` started until it ended, in the kernel's word: a
    /// deadline that passes meanwhile, or another tool's thaw, ends the
    /// freeze as always, and `body` goes on.
    ///
    /// ```no_run
    /// use freezefs::{Freezer, Timeout};
    ///
    /// let run = Freezer::from_env().run_frozen(&["/srv/db"], Timeout::Seconds(30), || {
    ///     std::process::Command::new("lvcreate")
    ///         .args(["-s", "-n", "db-snap", "-L", "1G", "vg/db"])
    ///         .status()
    /// })?;
    /// assert!(run.all_held(), "the snapshot is not consistent");
    /// # Ok::<(), freezefs::Error>(())
    /// ```
    pub fn run_frozen<P: AsRef<Path>, R>(
        &self,
        paths: &[P],
        timeout: Timeout,
        body: impl FnOnce() -> R,
    ) -> Result<RunFrozen<R>> {
        require_privilege()?;
        run_frozen::run_frozen(&self.settings, paths, timeout, body).inspect_err(|e| {
            let first = paths.first().map_or(Path::new(""), |p| p.as_ref());
            events::failed(first, None, e)
        })
    }

    /// Freezes like [`Freezer::freeze`] and returns a guard that thaws
    /// this freeze, and only this one, when dropped.
    pub fn freeze_guard(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<FreezeGuard> {
        let path = path.as_ref();
        let frozen = self.freeze_path(path, timeout)?;
        Ok(FreezeGuard::new(self.settings.clone(), path, frozen))
    }

    fn freeze_path(&self, path: &Path, timeout: Timeout) -> Result<freeze::Frozen> {
        require_privilege()?;
        let named = Resolved::path_to_change(path)?;
        let mut frozen = freeze::freeze_batch(&self.settings, vec![named], timeout)?;
        Ok(frozen.remove(0))
    }

    /// Thaws the filesystem whose mount point is `path`. Always issues
    /// FITHAW, so it also rescues a freeze made by another tool.
    pub fn thaw(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let named = resolved(path, Resolved::path_to_change(path))?;
        reported(named, |named| thaw::thaw(&self.settings, &named))
    }

    /// Thaws the filesystem that `fd` lies on (any fd inside it).
    pub fn thaw_fd(&self, fd: BorrowedFd<'_>) -> Result<()> {
        let named = resolved(Path::new(AN_FD), Resolved::fd(fd))?;
        reported(named, |named| thaw::thaw(&self.settings, &named))
    }

    /// Thaws several filesystems. Every one is thawed that can be (a thaw
    /// never stops half way: leaving one frozen is the worse outcome); the
    /// first failure, if any, is returned.
    pub fn thaw_all<P: AsRef<Path>>(&self, paths: &[P]) -> Result<()> {
        require_privilege()?;
        if paths.is_empty() {
            return Err(Error::InvalidArgument("no mount point given"));
        }
        thaw::thaw_all(&self.settings, paths)
    }

    /// True when the filesystem whose mount point is `path` is frozen through
    /// freezefs (by any process). A freeze still flushing is not frozen yet.
    /// Never freezes anything; thaws only a freeze whose deadline has passed.
    pub fn is_frozen(&self, path: impl AsRef<Path>) -> Result<bool> {
        require_privilege()?;
        query::is_frozen_at(&self.settings, path.as_ref())
    }

    /// The state of the filesystem mounted at `path`. Like QUERY, it thaws
    /// a freeze whose deadline has passed, and then reports it thawed.
    pub fn status(&self, path: impl AsRef<Path>) -> Result<Status> {
        require_privilege()?;
        status::status(&self.settings, &Resolved::path(path.as_ref())?)
    }

    /// The state of the filesystem that `fd` lies on (any fd inside it):
    /// see [`Freezer::status`].
    pub fn status_fd(&self, fd: BorrowedFd<'_>) -> Result<Status> {
        require_privilege()?;
        status::status(&self.settings, &Resolved::fd(fd)?)
    }

    /// Every filesystem frozen (or freezing) through this state directory.
    /// Freezes whose deadline passed are thawed on the way and left out.
    pub fn list(&self) -> Result<Vec<Status>> {
        require_privilege()?;
        status::list(&self.settings)
    }

    /// Like [`Freezer::list`], but a record that cannot be read or a
    /// filesystem whose probe fails is set aside in
    /// [`Listing::problems`] rather than failing the whole list.
    pub fn listing(&self) -> Result<Listing> {
        require_privilege()?;
        status::listing(&self.settings)
    }

    /// Runs the guard in this process until SIGTERM or SIGINT: every
    /// filesystem on this host that another tool froze (not through
    /// freezefs) is seen within a second and thawed once it has lasted
    /// `freezefs_foreign_max_timeout` (`vfs:` stanza of the sysconfigtab;
    /// 600 s when unset; 0 or negative: only reported). freezefs's own
    /// freezes are never touched. `started` hears what it watches once it
    /// runs. One guard per state directory: another one is `EBUSY`.
    ///
    /// A filesystem frozen when it stops keeps a thread of this process
    /// waiting for its thaw: the process finishes exiting at that thaw.
    pub fn guard_host(&self, started: impl FnOnce(GuardStart)) -> Result<()> {
        guard_loop::run(
            &self.settings.state_dir,
            &self.settings.sysconfigtab,
            started,
        )
    }

    /// Gives the freeze of the filesystem mounted at `path` a new timeout,
    /// counted from now (`Timeout::Never` removes the deadline).
    /// [`Error::ResetNotFrozen`] (`EINVAL`) when it is not frozen.
    pub fn reset_timeout(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        let path = path.as_ref();
        let named = resolved(path, Resolved::path(path))?;
        reported(named, |named| {
            reset::reset_timeout(&self.settings, &named, timeout, events::Kind::Reset)
        })
    }

    /// [`Freezer::reset_timeout`] for a freeze held on a short lease that its
    /// keeper renews while it lives (as `freezefs-group agent` holds its
    /// host's part of a group freeze): a keeper that dies, hangs or loses its
    /// own word stops renewing, and the freeze ends at its deadline. Each
    /// renewal is logged at debug severity rather than as a notice.
    pub fn renew_timeout(&self, path: impl AsRef<Path>, timeout: Timeout) -> Result<()> {
        let path = path.as_ref();
        let named = resolved(path, Resolved::path(path))?;
        reported(named, |named| {
            reset::reset_timeout(&self.settings, &named, timeout, events::Kind::Renewed)
        })
    }
}

/// The privilege check, then what the caller named; a failure is reported
/// under the name it gave.
fn resolved(given: &Path, named: Result<Resolved>) -> Result<Resolved> {
    require_privilege()
        .and(named)
        .inspect_err(|e| events::failed(given, None, e))
}

/// Runs `op` on a resolved filesystem; a failure is reported with its mount
/// point and device, never the caller's fd.
fn reported<T>(named: Resolved, op: impl FnOnce(Resolved) -> Result<T>) -> Result<T> {
    let (mount_point, device) = (named.mount.mount_point.clone(), named.device());
    op(named).inspect_err(|e| events::failed(&mount_point, Some(device), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bad_event_tag_is_einval_and_a_good_one_is_kept() {
        let err = Freezer::new().with_event_tag("reason=forged").unwrap_err();
        assert_eq!(err.errno(), libc::EINVAL);
        let tagged = Freezer::new().with_event_tag("job=nightly run=7").unwrap();
        assert_eq!(
            tagged.settings.event_tag.as_deref(),
            Some("job=nightly run=7")
        );
    }
}
