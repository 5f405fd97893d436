//! One member's part of a group freeze: its mounts frozen through the
//! library (hooks, pre-sync, all or nothing, kernel truth), on a thread of
//! their own, and held on a short local lease that the agent renews only
//! while etcd keeps the agent's lease. An agent that dies, hangs or loses
//! etcd stops renewing, and its host's holder thaws within the TTL, with no
//! word from anyone.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use freezefs::{EndReason, Freezer, Timeout};
use tokio::sync::mpsc::UnboundedSender;

/// What the freezing thread tells the agent.
#[derive(Debug)]
pub(crate) enum LocalNews {
    Frozen {
        epoch: i64,
        at_unix_ns: u128,
    },
    Failed {
        epoch: i64,
        error: String,
    },
    Thawed {
        epoch: i64,
        held: bool,
        ended: Vec<String>,
    },
}

/// A freeze of the agent's mounts, from the freeze until its thaw.
pub(crate) struct LocalFreeze {
    end: mpsc::Sender<()>,
}

impl LocalFreeze {
    /// Freezes `mounts` all or nothing with a deadline `timeout_s` from now,
    /// on a thread that reports to `news` and thaws when ended.
    pub(crate) fn start(
        freezer: Freezer,
        mounts: Vec<PathBuf>,
        timeout_s: u32,
        epoch: i64,
        news: UnboundedSender<LocalNews>,
    ) -> LocalFreeze {
        let (end, ended) = mpsc::channel::<()>();
        std::thread::spawn(move || {
            let frozen_news = news.clone();
            let run = freezer.run_frozen(&mounts, Timeout::Seconds(timeout_s.max(1)), || {
                let _ = frozen_news.send(LocalNews::Frozen {
                    epoch,
                    at_unix_ns: unix_ns(),
                });
                // Sent, or the agent is gone: either ends the freeze.
                let _ = ended.recv();
            });
            let _ = news.send(match run {
                Ok(run) => LocalNews::Thawed {
                    epoch,
                    held: run.all_held(),
                    ended: run
                        .freezes
                        .iter()
                        .filter(|f| !f.held)
                        .map(|f| match (&f.ended, &f.hold_broken) {
                            (None, Some(broken)) => format!(
                                "{}: hold hook {} ended while frozen ({})",
                                f.mount_point.display(),
                                broken.hook,
                                broken.why
                            ),
                            (Some(last), _) => {
                                format!("{}: {}", f.mount_point.display(), ended_how(last.reason))
                            }
                            (None, None) => format!("{}: ended early", f.mount_point.display()),
                        })
                        .collect(),
                },
                Err(e) => LocalNews::Failed {
                    epoch,
                    error: e.to_string(),
                },
            });
        });
        LocalFreeze { end }
    }

    /// Thaws (the thread reports [`LocalNews::Thawed`]).
    pub(crate) fn end(&self) {
        let _ = self.end.send(());
    }
}

/// Gives every mount's freeze a deadline `timeout_s` from now; the first
/// failure (the freeze is no longer there) is returned.
pub(crate) fn renew(freezer: &Freezer, mounts: &[PathBuf], timeout_s: u32) -> Result<(), String> {
    for mount in mounts {
        freezer
            .renew_timeout(mount, Timeout::Seconds(timeout_s.max(1)))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Checks that every mount is still frozen through freezefs; the first one
/// that is not is the error.
pub(crate) fn still_frozen(freezer: &Freezer, mounts: &[PathBuf]) -> Result<(), String> {
    for mount in mounts {
        match freezer.is_frozen(mount) {
            Ok(true) => {}
            Ok(false) => return Err(format!("{} is no longer frozen", mount.display())),
            Err(e) => return Err(format!("{}: {e}", mount.display())),
        }
    }
    Ok(())
}

/// Whole seconds in `left`, rounded down so that a local deadline never
/// outlives what it is bound to; `None` under a second.
pub(crate) fn whole_seconds(left: Duration) -> Option<u32> {
    u32::try_from(left.as_secs()).ok().filter(|&s| s >= 1)
}

pub(crate) fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

pub(crate) fn unix_ms() -> u64 {
    (unix_ns() / 1_000_000) as u64
}

/// How a local freeze ended early, in words: the library's, but for the
/// two that mean something else within a group.
fn ended_how(reason: EndReason) -> &'static str {
    match reason {
        EndReason::Timeout => "its local deadline passed",
        EndReason::Thawed => "it was thawed early",
        other => other.describe(),
    }
}

/// This host's name, as the kernel has it.
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}
