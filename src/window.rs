//! The short freeze window: flush while writes still flow, then FIFREEZE
//! every member, in parallel where no mount lies inside another, so that
//! writers wait only for the residue and the freezes land together.

use crate::error::{Error, Result};
use crate::freeze::Member;
use crate::process::{now_boot_ns, now_unix_ns};
use crate::sys;

/// How many times a freeze flushes before FIFREEZE at most.
const MAX_SYNC_ROUNDS: usize = 4;
/// A dirty residue this small (KiB, system-wide) is not worth another round.
const SMALL_RESIDUE_KIB: u64 = 4096;
/// A flush this quick had little to write; writers meanwhile dirtied less.
const QUICK_SYNC: std::time::Duration = std::time::Duration::from_millis(5);

/// Dirty and writeback memory, system-wide, in KiB (the kernel keeps no
/// per-filesystem figure that is cheap to read).
fn dirty_kib() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
    };
    Some(field("Dirty:")? + field("Writeback:").unwrap_or(0))
}

/// Flushes every member while writers still flow, in parallel, repeating
/// while the dirty residue keeps shrinking (at most [`MAX_SYNC_ROUNDS`]), so
/// that FIFREEZE blocks writers only for what is left.
pub(crate) fn presync(members: &[Member]) {
    let mut last = dirty_kib();
    if last.is_some_and(|kib| kib <= SMALL_RESIDUE_KIB) {
        // Next to nothing to flush: FIFREEZE's own sync is as short, and a
        // second journal commit would only lengthen an idle freeze.
        return;
    }
    for _ in 0..MAX_SYNC_ROUNDS {
        let started = std::time::Instant::now();
        std::thread::scope(|scope| {
            if let Some((first, rest)) = members.split_first() {
                for m in rest {
                    scope.spawn(|| rustix::fs::syncfs(&m.mount_fd));
                }
                let _ = rustix::fs::syncfs(&first.mount_fd);
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

/// Freezing waves: a member goes after every member mounted inside it.
/// Members with no nesting between them share a wave and freeze in
/// parallel, so that they freeze within a few milliseconds of each other.
fn waves(members: &[Member]) -> Vec<Vec<usize>> {
    let inside = |inner: usize, outer: usize| {
        let (a, b) = (
            &members[inner].named.mount.mount_point,
            &members[outer].named.mount.mount_point,
        );
        a != b && a.starts_with(b)
    };
    let mut wave_of = vec![0usize; members.len()];
    // Members are sorted deepest first: every inner one is settled before its parents.
    for i in 0..members.len() {
        wave_of[i] = (0..i)
            .filter(|&j| inside(j, i))
            .map(|j| wave_of[j] + 1)
            .max()
            .unwrap_or(0);
    }
    let mut waves = vec![Vec::new(); wave_of.iter().max().map_or(0, |m| m + 1)];
    for (i, w) in wave_of.into_iter().enumerate() {
        waves[w].push(i);
    }
    waves
}

/// FIFREEZE every member, wave by wave; on a failure, thaw every member
/// frozen so far, newest first, and return the first failure (in member
/// order).
pub(crate) fn fifreeze_all(members: &mut [Member]) -> Result<()> {
    let mut frozen: Vec<usize> = Vec::new();
    for wave in waves(members) {
        let freeze_one = |i: usize| {
            (
                i,
                sys::fifreeze(&members[i].mount_fd).map(|()| now_boot_ns()),
                now_unix_ns(),
            )
        };
        let results: Vec<(usize, std::io::Result<u64>, u64)> = if let [only] = wave[..] {
            // One filesystem: no thread to start.
            vec![freeze_one(only)]
        } else {
            std::thread::scope(|scope| {
                let handles: Vec<_> = wave
                    .iter()
                    .map(|&i| {
                        let fd = &members[i].mount_fd;
                        scope.spawn(move || {
                            (i, sys::fifreeze(fd).map(|()| now_boot_ns()), now_unix_ns())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().expect("FIFREEZE thread"))
                    .collect()
            })
        };
        let mut first_failure = None;
        for (i, result, unix_ns) in results {
            match result {
                Ok(boot_ns) => {
                    frozen.push(i);
                    if let Some(record) = &mut members[i].record {
                        record.frozen_at_boot_ns = boot_ns;
                        record.frozen_at_unix_ns = unix_ns;
                    }
                }
                Err(e) => {
                    if first_failure.as_ref().is_none_or(|(j, _)| i < *j) {
                        first_failure = Some((i, e));
                    }
                }
            }
        }
        if let Some((i, e)) = first_failure {
            for &j in frozen.iter().rev() {
                let _ = sys::fithaw(&members[j].mount_fd);
            }
            let m = &members[i];
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => Error::AlreadyFrozen(m.path.clone()),
                Some(libc::EOPNOTSUPP) => Error::Unsupported {
                    path: m.path.clone(),
                    fs_type: m.named.mount.fs_type.clone(),
                },
                _ => Error::os(format!("{}: FIFREEZE", m.path.display()), e),
            });
        }
    }
    Ok(())
}
