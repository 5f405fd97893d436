//! The guard's idle cost: `freezefs --guard` watching 50 loop-mounted ext4
//! filesystems (and the machine's own) with nothing frozen, its CPU time
//! and its wakeups (voluntary context switches) over a stretch of time.
//! It runs in a private mount namespace (a re-exec through unshare), so
//! that the 50 mounts and the guard are the benchmark's alone.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::scratch::ScratchFs;

/// CPU nanoseconds and voluntary context switches of every thread of `pid`.
fn usage(pid: u32) -> (u64, u64) {
    let mut cpu = 0;
    let mut switches = 0;
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return (0, 0);
    };
    for task in tasks.flatten() {
        let dir = task.path();
        if let Ok(stat) = std::fs::read_to_string(dir.join("schedstat")) {
            cpu += stat
                .split_whitespace()
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0);
        }
        if let Ok(status) = std::fs::read_to_string(dir.join("status")) {
            switches += status
                .lines()
                .find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"))
                .and_then(|n| n.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    (cpu, switches)
}

/// In the namespace: mounts `mounts` filesystems, runs the guard `secs`
/// seconds, prints `guard WATCHED CPU_NS SWITCHES SECS`.
pub(crate) fn child(work: &Path, mounts: usize, secs: u64) {
    let exe = std::env::current_exe().unwrap();
    let guard_exe = exe.parent().unwrap().join("freezefs");
    let filesystems: Vec<ScratchFs> = (0..mounts)
        .map(|i| ScratchFs::new(work, &format!("guarded{i}"), 8))
        .collect();
    std::fs::write(
        work.join("sysconfigtab"),
        "vfs:\n\tfreezefs_foreign_max_timeout = 600\n",
    )
    .unwrap();
    let mut guard = Command::new(&guard_exe)
        .arg("--guard")
        .env("FREEZEFS_RUNDIR", work.join("guard-run"))
        .env("FREEZEFS_SYSCONFIGTAB", work.join("sysconfigtab"))
        .env("FREEZEFS_SYSLOG_SOCKET", work.join("no-syslog"))
        .stdin(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut said = String::new();
    BufReader::new(guard.stderr.take().unwrap())
        .read_line(&mut said)
        .unwrap();
    let watched: usize = said
        .split_whitespace()
        .find_map(|w| w.parse().ok())
        .unwrap_or(0);
    // Past its start-up: the idle loop alone.
    std::thread::sleep(Duration::from_secs(1));
    let (cpu0, sw0) = usage(guard.id());
    let start = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let (cpu1, sw1) = usage(guard.id());
    let took = start.elapsed().as_secs_f64();
    let _ = Command::new("kill").arg(guard.id().to_string()).status();
    let _ = guard.wait();
    drop(filesystems);
    println!("guard {watched} {} {} {took:.3}", cpu1 - cpu0, sw1 - sw0);
}

/// Runs [`child`] in a private mount namespace; its rows, to print.
pub(crate) fn rows(work: &Path, smoke: bool) -> String {
    let exe = std::env::current_exe().unwrap();
    if !exe.parent().unwrap().join("freezefs").exists() {
        return "\nThe guard: not measured: freezefs is missing from this build (cargo build --release)\n".into();
    }
    let (mounts, secs) = if smoke { (10, 3) } else { (50, 60) };
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(&exe)
        .arg("--guard-child")
        .arg(work)
        .arg(mounts.to_string())
        .arg(secs.to_string())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let Some(row) = text.lines().find_map(|l| l.strip_prefix("guard ")) else {
        return format!(
            "\nThe guard: not measured: {}\n",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    };
    let v: Vec<f64> = row.split(' ').filter_map(|x| x.parse().ok()).collect();
    let [watched, cpu_ns, switches, took] = v[..] else {
        return format!("\nThe guard: not measured: {row}\n");
    };
    format!(
        "\nThe guard idle (freezefs --guard, {mounts} scratch ext4 mounts, {watched:.0} filesystems watched, nothing frozen, {took:.0} s; goal: negligible):\n  CPU {:.2} s per hour ({:.3}% of one core), {:.1} wakeups/s\n",
        cpu_ns / 1e9 / took * 3600.0,
        cpu_ns / 1e9 / took * 100.0,
        switches / took
    )
}
