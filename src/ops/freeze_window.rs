//! The short freeze window: flush while writes still flow, then FIFREEZE
//! every filesystem, in parallel where no mount lies inside another, so that
//! writers wait only for the residue and the freezes land together. It knows
//! fds and mount points only, nothing of records or holders.

use std::os::fd::BorrowedFd;
use std::path::Path;

use crate::os::process::{now_boot_ns, now_unix_ns};
use crate::os::syscalls;

/// How many times a freeze flushes before FIFREEZE at most.
const MAX_SYNC_ROUNDS: usize = 4;
/// A dirty residue this small (KiB, system-wide) is not worth another round.
const SMALL_RESIDUE_KIB: u64 = 4096;
/// A flush this quick had little to write; writers meanwhile dirtied less.
const QUICK_SYNC: std::time::Duration = std::time::Duration::from_millis(5);

/// Dirty and writeback memory, system-wide, in KiB (the kernel keeps no
/// per-filesystem figure that is cheap to read).
fn dirty_kib() -> Option<u64> {
    let text = crate::os::small_file::read_proc("/proc/meminfo").ok()?;
    let text = std::str::from_utf8(&text).ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(field("Dirty:")? + field("Writeback:").unwrap_or(0))
}

/// Flushes every filesystem while writers still flow, in parallel, repeating
/// while the dirty residue keeps shrinking (at most [`MAX_SYNC_ROUNDS`]), so
/// that FIFREEZE blocks writers only for what is left.
pub(crate) fn presync(fds: &[BorrowedFd<'_>]) {
    let mut last = dirty_kib();
    if last.is_some_and(|kib| kib <= SMALL_RESIDUE_KIB) {
        // Next to nothing to flush: FIFREEZE's own sync is as short, and a
        // second journal commit would only lengthen an idle freeze.
        return;
    }
    for _ in 0..MAX_SYNC_ROUNDS {
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            if let Some((first, rest)) = fds.split_first() {
                for fd in rest {
                    scope.spawn(move || rustix::fs::syncfs(fd));
                }
                let _ = rustix::fs::syncfs(*first);
            }
        });
        if started.elapsed() < QUICK_SYNC {
            // A quick flush leaves a residue too small for another round.
            break;
        }
        let now = dirty_kib();
        match (last, now) {
            (Some(before), Some(after)) if after > SMALL_RESIDUE_KIB && after < before / 2 => {
                last = now;
            }
            _ => break,
        }
    }
}

/// Freezing waves, as indices into `mount_points`: a filesystem goes after
/// every one mounted inside it. Those with no nesting between them share a
/// wave and freeze in parallel, so that they freeze within a few
/// milliseconds of each other.
pub(crate) fn waves(mount_points: &[&Path]) -> Vec<Vec<usize>> {
    let inside = |inner: usize, outer: usize| {
        let (a, b) = (mount_points[inner], mount_points[outer]);
        a != b && a.starts_with(b)
    };
    // Deepest first: every inner mount is settled before those around it.
    let mut order: Vec<usize> = (0..mount_points.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(mount_points[i].components().count()));
    let mut wave_of = vec![0usize; mount_points.len()];
    for (k, &i) in order.iter().enumerate() {
        wave_of[i] = order[..k]
            .iter()
            .filter(|&&j| inside(j, i))
            .map(|&j| wave_of[j] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut waves = vec![Vec::new(); wave_of.iter().max().map_or(0, |m| m + 1)];
    for (i, w) in wave_of.into_iter().enumerate() {
        waves[w].push(i);
    }
    waves
}

/// When one FIFREEZE returned.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FrozenAt {
    /// `CLOCK_BOOTTIME`, nanoseconds.
    pub(crate) boot_ns: u64,
    /// Wall clock, nanoseconds since the epoch.
    pub(crate) unix_ns: u64,
}

/// FIFREEZE every fd, wave by wave (see [`waves`]). On a failure, thaws every
/// one frozen so far, newest first, and returns the index of the first
/// failure (in the given order) with its error.
pub(crate) fn fifreeze_all(
    fds: &[BorrowedFd<'_>],
    mount_points: &[&Path],
) -> Result<Vec<FrozenAt>, (usize, std::io::Error)> {
    let freeze_one = |fd: BorrowedFd<'_>| {
        let result = syscalls::fifreeze(fd).map(|()| now_boot_ns());
        (result, now_unix_ns())
    };
    let mut frozen: Vec<usize> = Vec::new();
    let mut times = vec![None; fds.len()];
    for wave in waves(mount_points) {
        let results: Vec<(usize, std::io::Result<u64>, u64)> = if let [only] = wave[..] {
            // One filesystem: no thread to start.
            let (result, unix_ns) = freeze_one(fds[only]);
            vec![(only, result, unix_ns)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = wave
                    .iter()
                    .map(|&i| {
                        let fd = fds[i];
                        scope.spawn(move || {
                            let (result, unix_ns) = freeze_one(fd);
                            (i, result, unix_ns)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("FIFREEZE thread"))
                    .collect()
            })
        };
        let mut first_failure: Option<(usize, std::io::Error)> = None;
        for (i, result, unix_ns) in results {
            match result {
                Ok(boot_ns) => {
                    frozen.push(i);
                    times[i] = Some(FrozenAt { boot_ns, unix_ns });
                }
                Err(e) => {
                    if first_failure.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_failure = Some((i, e));
                    }
                }
            }
        }
        if let Some(failure) = first_failure {
            for &j in frozen.iter().rev() {
                let _ = syscalls::fithaw(fds[j]);
            }
            return Err(failure);
        }
    }
    Ok(times
        .into_iter()
        .map(|t| t.expect("every wave froze its members"))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn waves_of(paths: &[&str]) -> Vec<Vec<usize>> {
        let paths: Vec<&Path> = paths.iter().map(Path::new).collect();
        waves(&paths)
    }

    #[test]
    fn unrelated_mounts_freeze_in_one_wave() {
        assert_eq!(waves_of(&["/a", "/b", "/c/d"]), vec![vec![0, 1, 2]]);
    }

    #[test]
    fn a_mount_freezes_after_every_mount_inside_it() {
        assert_eq!(
            waves_of(&["/srv", "/srv/db", "/srv/db/log"]),
            vec![vec![2], vec![1], vec![0]]
        );
    }

    #[test]
    fn siblings_inside_one_parent_share_the_wave_before_it() {
        assert_eq!(
            waves_of(&["/srv/b", "/srv", "/srv/a", "/other"]),
            vec![vec![0, 2, 3], vec![1]]
        );
    }

    #[test]
    fn a_name_prefix_is_not_nesting() {
        // /srv/database is not inside /srv/data.
        assert_eq!(waves_of(&["/srv/data", "/srv/database"]), vec![vec![0, 1]]);
    }

    #[test]
    fn a_parent_waits_for_its_deepest_descendant() {
        // /a waits for /a/b (wave 1), which waits for /a/b/c (wave 0);
        // /a/x has nothing inside it.
        assert_eq!(
            waves_of(&["/a", "/a/x", "/a/b", "/a/b/c"]),
            vec![vec![1, 3], vec![2], vec![0]]
        );
    }

    #[test]
    fn no_mounts_make_no_waves() {
        assert!(waves_of(&[]).is_empty());
    }
}
