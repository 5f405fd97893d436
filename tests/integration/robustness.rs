//! Thread safety and crash safety of the core on real filesystems.

use crate::support;

use std::process::Command;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use freezefs::{Error, Timeout};
use support::{Kind, Scratch, fzctl_cmd};

fn allowed(r: &Result<(), Error>) -> bool {
    matches!(
        r,
        Ok(()) | Err(Error::AlreadyFrozen(_)) | Err(Error::NotFrozen(_))
    )
}

fn state_files(fs: &Scratch) -> Vec<String> {
    std::fs::read_dir(fs.state_dir())
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                // Locks, the holder's socket and how the last freeze
                // ended are kept on purpose.
                .filter(|n| {
                    !n.starts_with("lock.") && !n.starts_with("ended.") && n != "holder.sock"
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn eight_threads_freezing_thawing_and_querying_one_filesystem_agree_with_the_kernel() {
    let mut fs = Scratch::new(Kind::Ext4);
    let bind = fs.bind("bind");
    let fs = Arc::new(fs);
    let start = Instant::now();
    let workers: Vec<_> = (0..8)
        .map(|t| {
            let fs = Arc::clone(&fs);
            let bind = bind.clone();
            thread::spawn(move || {
                let f = fs.freezer();
                let path = if t % 2 == 0 { fs.mnt.clone() } else { bind };
                for i in 0..60u32 {
                    let op = (t * 7 + i * 13) % 5;
                    let call = Instant::now();
                    match op {
                        0 => assert!(allowed(&f.freeze(&path, Timeout::Seconds(30)))),
                        1 => assert!(allowed(&f.freeze(&path, Timeout::Never))),
                        2 => assert!(allowed(&f.freeze(&path, Timeout::Default))),
                        3 => assert!(allowed(&f.thaw(&path))),
                        _ => {
                            f.is_frozen(&path).unwrap();
                        }
                    }
                    assert!(
                        call.elapsed() < Duration::from_secs(10),
                        "a call took {:?}",
                        call.elapsed()
                    );
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    // Quiescent: the answer must be the kernel's truth.
    let f = fs.freezer();
    assert_eq!(f.is_frozen(&fs.mnt).unwrap(), fs.kernel_frozen());
    let _ = f.thaw(&fs.mnt);
    assert!(!f.is_frozen(&fs.mnt).unwrap());
    assert!(!fs.kernel_frozen());
    assert_eq!(state_files(&fs), Vec::<String>::new());
    eprintln!("480 concurrent calls in {:?}", start.elapsed());
}

#[test]
fn freezes_of_different_filesystems_from_many_threads_do_not_interfere() {
    let filesystems: Vec<Arc<Scratch>> = [Kind::Ext4, Kind::Xfs, Kind::Btrfs]
        .into_iter()
        .map(|k| Arc::new(Scratch::new(k)))
        .collect();
    let workers: Vec<_> = filesystems
        .iter()
        .map(|fs| {
            let fs = Arc::clone(fs);
            thread::spawn(move || {
                let f = fs.freezer();
                for _ in 0..20 {
                    f.freeze(&fs.mnt, Timeout::Seconds(30)).unwrap();
                    assert!(f.is_frozen(&fs.mnt).unwrap());
                    f.thaw(&fs.mnt).unwrap();
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    for fs in &filesystems {
        assert!(!fs.kernel_frozen());
    }
}

/// A freezer killed at a random moment (before, during or after FIFREEZE,
/// while writing its record) leaves no torn record, and the next call tells
/// the truth: a freeze that completed stays until its deadline; one that
/// never returned to its caller is undone.
#[test]
fn freezers_killed_at_random_moments_leave_truthful_state() {
    let fs = Scratch::new(Kind::Ext4);
    let f = fs.freezer();
    let mut frozen_after_kill = 0;
    for trial in 0..50u64 {
        let mut child = fzctl_cmd(&fs, "1", &fs.mnt, "30")
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // Spread the kills over the whole call (a freeze takes a few ms).
        thread::sleep(Duration::from_micros((trial * 61) % 3000));
        let _ = Command::new("kill")
            .arg("-9")
            .arg(child.id().to_string())
            .status();
        child.wait().unwrap();
        let answer = f.is_frozen(&fs.mnt).expect("no torn or unreadable record");
        assert_eq!(
            answer,
            fs.kernel_frozen(),
            "trial {trial}: QUERY disagrees with the kernel"
        );
        if answer {
            frozen_after_kill += 1;
            f.thaw(&fs.mnt).unwrap();
        }
    }
    eprintln!("50 SIGKILL trials: {frozen_after_kill} had completed the freeze");
    f.freeze(&fs.mnt, Timeout::Never).unwrap();
    f.thaw(&fs.mnt).unwrap();
    // The holder sweeps temporary files of killed writers when it goes idle.
    assert!(
        support::wait_until(Duration::from_secs(2), Duration::from_millis(20), || {
            state_files(&fs).iter().all(|n| n == "holder.sock")
        }),
        "temporary files left behind: {:?}",
        state_files(&fs)
    );
}

/// Runs freezefs(8) or thawfs(8) under `ulimit -n LIMIT`.
fn under_fd_limit(fs: &Scratch, limit: u32, bin: &str, args: &str) -> std::process::Output {
    let mut cmd = std::process::Command::new("sh");
    cmd.arg("-c")
        .arg(format!("ulimit -n {limit} && exec {bin} {args}"));
    support::with_env(&mut cmd, fs).output().unwrap()
}

/// A service with a tight open-file limit (LimitNOFILE=32) still freezes,
/// and the holder it starts inherits the limit and keeps the freeze.
#[test]
fn a_freeze_works_under_an_open_file_limit_of_32() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.display().to_string();
    let froze = under_fd_limit(
        &fs,
        32,
        crate::support::freezefs_exe(),
        &format!("-t 30 {mnt}"),
    );
    assert!(froze.status.success(), "{froze:?}");
    assert!(fs.kernel_frozen());
    let query = under_fd_limit(
        &fs,
        32,
        crate::support::freezefs_exe(),
        &format!("-q {mnt}"),
    );
    assert_eq!(query.status.code(), Some(0), "{query:?}");
    let thaw = under_fd_limit(&fs, 32, crate::support::thawfs_exe(), &mnt);
    assert!(thaw.status.success(), "{thaw:?}");
    assert!(!fs.kernel_frozen());
}

/// Below what a freeze needs, it fails, freezes nothing, and the message
/// names the limit rather than advising a reinstall.
#[test]
fn below_the_open_files_a_freeze_needs_the_error_names_the_limit() {
    let fs = Scratch::new(Kind::Ext4);
    let mnt = fs.mnt.display().to_string();
    let out = under_fd_limit(
        &fs,
        12,
        crate::support::freezefs_exe(),
        &format!("-t 30 {mnt}"),
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(said.contains("open-file limit (ulimit -n) is 12"), "{said}");
    assert!(!said.contains("reinstall"), "{said}");
    assert!(!fs.kernel_frozen());
    assert_eq!(fs.record_text(), None);
}
