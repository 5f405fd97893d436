//! freezefs-bench: what a freeze costs, freezefs side by side with the raw
//! ioctls and util-linux fsfreeze, on scratch loop-mounted ext4.
//!
//!     cargo build --release && sudo target/release/freezefs-bench [--smoke] [--out DIR]
//!
//! Prints a table with the goals, writes DIR/freezefs-bench.json and
//! DIR/writer-stall.svg (DIR defaults to target/bench). --smoke is the short
//! version CI runs. Root only; it freezes nothing but its own images.

mod fast_path;
mod guard_cost;
mod measure;
mod report;
mod scratch;

use std::path::{Path, PathBuf};
use std::process::Command;

use freezefs::{Freezer, Timeout};

use measure::Method;
use scratch::ScratchFs;

struct Sizes {
    image_mib: u64,
    dirty_mib: [u64; 3],
    cycles: usize,
    timeout_trials: usize,
    many_mounts: usize,
    queries: usize,
    skew_image_mib: u64,
    skew_dirty_mib: u64,
}

const FULL: Sizes = Sizes {
    image_mib: 2048,
    dirty_mib: [0, 128, 512],
    cycles: 300,
    timeout_trials: 20,
    many_mounts: 5000,
    queries: 5000,
    skew_image_mib: 1024,
    skew_dirty_mib: 256,
};

const SMOKE: Sizes = Sizes {
    image_mib: 512,
    dirty_mib: [0, 32, 64],
    cycles: 30,
    timeout_trials: 3,
    many_mounts: 500,
    queries: 500,
    skew_image_mib: 256,
    skew_dirty_mib: 32,
};

/// pgbench's latency during three freeze, 0.5 s snapshot, thaw cycles of a
/// live PostgreSQL, freezefs beside fsfreeze (scripts/bench-postgres).
fn postgres_rows(smoke: bool) {
    let scale = if smoke { "4" } else { "20" };
    println!(
        "\nPostgreSQL under pgbench (4 clients, scale {scale}), latency during three freeze, 0.5 s snapshot, thaw cycles:"
    );
    script_rows("scripts/bench-postgres", &["freezefs"], &[scale]);
}

/// A consistency group of 3, 10, 30 and 100 agents on one etcd: the
/// barrier, the freezes' spread, a member's death to the last thaw, and the
/// agents' idle CPU and memory (scripts/bench-group).
fn group_rows(smoke: bool) {
    let sizes: &[&str] = if smoke {
        &["3"]
    } else {
        &["3", "10", "30", "100"]
    };
    println!(
        "\nConsistency groups (freezefs-group on one local etcd, agents standing for hosts; goals: last freeze to barrier <= 100 ms at 100 agents, a member killed to the last thawed <= TTL + 1 s):"
    );
    script_rows(
        "scripts/bench-group",
        &["freezefs-group", "freezefs-holder"],
        sizes,
    );
}

/// Runs a benchmark script of the project with the named executables of
/// this build (beside this one) and `args`, and prints what it prints.
fn script_rows(script: &str, executables: &[&str], args: &[&str]) {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join(script);
    let dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let exes: Vec<_> = executables
        .iter()
        .filter_map(|name| dir.as_ref().map(|d| d.join(name)))
        .filter(|exe| exe.exists())
        .collect();
    if exes.len() < executables.len() || !script.exists() {
        println!(
            "  not measured: {} or one of {} is missing from this build (cargo build --release --workspace)",
            script.display(),
            executables.join(", ")
        );
        return;
    }
    match Command::new(&script).args(&exes).args(args).output() {
        Ok(out) if out.status.success() => print!("{}", String::from_utf8_lossy(&out.stdout)),
        Ok(out) => println!(
            "  not measured: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => println!("  not measured: {e}"),
    }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines().find_map(|l| {
                l.strip_prefix("model name")
                    .map(|v| v.trim_start_matches([' ', '\t', ':']).to_string())
            })
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()
        })
        .map_or(0.0, |kib| kib / 1024.0 / 1024.0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cores} x {cpu}, {mem_gib:.0} GiB, Linux {}", kernel.trim())
}

/// A freezer whose state directory is `state_dir`.
fn freezer_at(state_dir: PathBuf) -> Freezer {
    let exe = std::env::current_exe().unwrap();
    Freezer::new()
        .with_state_dir(state_dir)
        .with_holder(exe.parent().unwrap().join("freezefs-holder"))
}

/// The state directory on tmpfs, as /run is on a systemd machine (this
/// machine's /run is on its ext4 root disk: the cycle is measured there too).
fn tmpfs_state_dir() -> PathBuf {
    PathBuf::from(format!(
        "/dev/shm/freezefs-bench-state.{}",
        std::process::id()
    ))
}

fn freezer(work: &Path) -> Freezer {
    let exe = std::env::current_exe().unwrap();
    let state_dir = std::env::var_os("FREEZEFS_BENCH_STATE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| work.join("run"));
    Freezer::new()
        .with_state_dir(state_dir)
        .with_sysconfigtab(work.join("sysconfigtab"))
        .with_holder(exe.parent().unwrap().join("freezefs-holder"))
}

/// How many mounts `freezefs -l` is timed at.
const LIST_MOUNTS: usize = 50;

/// Inside a private mount namespace (re-exec through unshare): QUERY at the
/// namespace's mounts, `-l` at [`LIST_MOUNTS`], then QUERY with bind mounts
/// added up to `many`.
fn query_child(mnt: &Path, work: &Path, many: usize, n: usize) {
    let f = freezer(work);
    let few = measure::query_latency(mnt, &f, n);
    measure::add_bind_mounts(&work.join("binds"), LIST_MOUNTS);
    let (mounts, list) = measure::list_latency(&f, 50);
    println!(
        "list {mounts} {}",
        list.0
            .iter()
            .map(|v| format!("{v:.1}"))
            .collect::<Vec<_>>()
            .join(",")
    );
    measure::add_bind_mounts(&work.join("binds"), many);
    let lots = measure::query_latency(mnt, &f, n);
    for (mounts, q, mi) in [few, lots] {
        println!(
            "{mounts} {} {}",
            q.0.iter()
                .map(|v| format!("{v:.3}"))
                .collect::<Vec<_>>()
                .join(","),
            mi.0.iter()
                .map(|v| format!("{v:.1}"))
                .collect::<Vec<_>>()
                .join(",")
        );
    }
}

/// QUERY at few and many mounts, and `-l` at [`LIST_MOUNTS`].
type Namespaced = (
    Vec<(usize, measure::Samples, measure::Samples)>,
    (usize, measure::Samples),
);

fn query_in_namespace(mnt: &Path, work: &Path, sizes: &Sizes) -> Namespaced {
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private"])
        .arg(std::env::current_exe().unwrap())
        .arg("--query-child")
        .arg(mnt)
        .arg(work)
        .env("FREEZEFS_BENCH_STATE_DIR", tmpfs_state_dir())
        .arg(sizes.many_mounts.to_string())
        .arg(sizes.queries.to_string())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "query child: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let parse = |list: &str| {
        let mut v: Vec<f64> = list.split(',').filter_map(|x| x.parse().ok()).collect();
        v.sort_by(f64::total_cmp);
        measure::Samples(v)
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let list = text
        .lines()
        .find_map(|l| {
            let mut parts = l.strip_prefix("list ")?.split(' ');
            Some((parts.next()?.parse().ok()?, parse(parts.next()?)))
        })
        .expect("the child timed -l");
    let query = text
        .lines()
        .filter(|l| !l.starts_with("list "))
        .filter_map(|l| {
            let mut parts = l.split(' ');
            Some((
                parts.next()?.parse().ok()?,
                parse(parts.next()?),
                parse(parts.next()?),
            ))
        })
        .collect();
    (query, list)
}

/// Exits unless root: loop mounts and FIFREEZE need it.
fn require_root() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("freezefs-bench: must run as root (loop mounts, FIFREEZE)");
        std::process::exit(1);
    }
}

/// Runs `body` on one scratch ext4 of `mib` MiB, with its work directory
/// and a state directory on tmpfs, all removed after.
fn on_one_scratch(name: &str, mib: u64, body: impl FnOnce(&ScratchFs, &Path, &Path)) {
    require_root();
    scratch::start_system_guard();
    let work = PathBuf::from(format!("/tmp/freezefs-bench.{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = tmpfs_state_dir();
    {
        let fs = ScratchFs::new(&work, name, mib);
        body(&fs, &work, &state_dir);
    }
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&state_dir);
}

/// `--fast-path`: the fast path through the C ABI alone, with its goals.
fn fast_path_only() {
    on_one_scratch("fast", 64, |fs, _, state_dir| {
        let figures = fast_path::measure(fs, state_dir);
        print!("{}", fast_path::table(&figures));
        for (what, measured, met) in fast_path::goals(&figures) {
            println!(
                "  [{}] {what}: {measured}",
                if met { "met " } else { "MISS" }
            );
        }
    });
}

/// `--cycles N`: the idle freeze+thaw cycles alone, N of each.
fn cycles_only(n: usize) {
    on_one_scratch("cycles", 256, |fs, work, state_dir| {
        let f = freezer_at(state_dir.to_path_buf());
        let hooks = measure::hook_cycles(fs, &f, work, n);
        for (name, s) in measure::cycles(fs, &f, n).into_iter().chain(hooks) {
            println!(
                "{name:<40} p50 {:>6.0} us  mean {:>6.0} us  p99 {:>6.0} us  n {}",
                s.quantile(0.5),
                s.mean(),
                s.quantile(0.99),
                s.0.len()
            );
        }
    });
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--query-child") {
        let [_, mnt, work, many, n] = &args[..] else {
            std::process::exit(2)
        };
        query_child(
            Path::new(mnt),
            Path::new(work),
            many.parse().unwrap(),
            n.parse().unwrap(),
        );
        return;
    }
    if args.first().map(String::as_str) == Some("--fast-path-child") {
        let [_, mnt] = &args[..] else {
            std::process::exit(2)
        };
        fast_path::child(Path::new(mnt));
        return;
    }
    if args.iter().any(|a| a == "--fast-path") {
        // The C ABI's four figures alone: to compare builds.
        fast_path_only();
        return;
    }
    if args.first().map(String::as_str) == Some("--guard-child") {
        let [_, work, mounts, secs] = &args[..] else {
            std::process::exit(2)
        };
        guard_cost::child(
            Path::new(work),
            mounts.parse().unwrap(),
            secs.parse().unwrap(),
        );
        return;
    }
    if let Some(n) = args
        .iter()
        .position(|a| a == "--cycles")
        .and_then(|i| args.get(i + 1))
    {
        // Only the freeze+thaw cycles, many of them: to compare builds.
        cycles_only(n.parse().unwrap_or(1000));
        return;
    }
    let smoke = args.iter().any(|a| a == "--smoke");
    let out_dir = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("target/bench"));
    if args.iter().any(|a| a == "-h" || a == "--help") {
        println!(
            "usage: freezefs-bench [--smoke] [--out DIR] | --cycles N | --fast-path   (as root)"
        );
        return;
    }
    require_root();
    let sizes = if smoke { &SMOKE } else { &FULL };
    scratch::start_system_guard();
    let work = PathBuf::from(format!("/tmp/freezefs-bench.{}", std::process::id()));
    std::fs::create_dir_all(&work).unwrap();
    let state_dir = tmpfs_state_dir();
    let f = freezer_at(state_dir.clone());
    let on_disk = freezer_at(work.join("run"));

    let guard;
    let results = {
        let fs = ScratchFs::new(&work, "main", sizes.image_mib);
        let mut stalls = Vec::new();
        for mib in sizes.dirty_mib {
            for method in [Method::Raw, Method::Fsfreeze, Method::Freezefs] {
                eprintln!(
                    "freezefs-bench: writer stall, {} with {mib} MiB dirty",
                    method.name()
                );
                stalls.push(measure::writer_stall(&fs, &f, method, mib));
            }
        }
        eprintln!("freezefs-bench: freeze+thaw cycles");
        let mut cycles = measure::cycles(&fs, &f, sizes.cycles);
        let disk = measure::cycles(&fs, &on_disk, sizes.cycles);
        for (name, samples) in disk.into_iter().filter(|(n, _)| n.starts_with("freezefs")) {
            cycles.push((
                if name.contains("untimed") {
                    "freezefs untimed, state on ext4 /run"
                } else {
                    "freezefs timed, state on ext4 /run"
                },
                samples,
            ));
        }
        eprintln!("freezefs-bench: hooks");
        cycles.extend(measure::hook_cycles(&fs, &f, &work, sizes.cycles));
        eprintln!("freezefs-bench: timeout accuracy");
        let timeout_errors = measure::timeout_accuracy(&fs, &f, sizes.timeout_trials);
        eprintln!("freezefs-bench: QUERY latency");
        f.freeze(&fs.mnt, Timeout::Seconds(600)).unwrap();
        let (query, list) = query_in_namespace(&fs.mnt, &work, sizes);
        f.thaw(&fs.mnt).unwrap();
        eprintln!("freezefs-bench: kernel truth (QUERY by probe, another tool's thaw)");
        let truth = measure::kernel_truth(&fs, &f, sizes.queries.min(1000), sizes.timeout_trials);
        eprintln!("freezefs-bench: freeze skew of four filesystems");
        let four: Vec<ScratchFs> = (0..4)
            .map(|i| ScratchFs::new(&work, &format!("skew{i}"), sizes.skew_image_mib))
            .collect();
        let skew = measure::skew(&four, &f, sizes.skew_dirty_mib);
        drop(four);
        eprintln!("freezefs-bench: the fast path through the C ABI");
        let fast_path = {
            let fs = ScratchFs::new(&work, "fast", 64);
            fast_path::measure(&fs, &state_dir)
        };
        eprintln!("freezefs-bench: the guard's idle cost");
        guard = guard_cost::rows(&work, smoke);
        report::Results {
            machine: machine(),
            smoke,
            stalls,
            cycles,
            timeout_errors,
            query,
            list,
            truth,
            skew,
            skew_dirty_mib: sizes.skew_dirty_mib,
            fast_path,
        }
    };
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&state_dir);

    print!("{}", report::table(&results));
    print!("{guard}");
    postgres_rows(smoke);
    group_rows(smoke);
    std::fs::create_dir_all(&out_dir).unwrap();
    std::fs::write(out_dir.join("freezefs-bench.json"), report::json(&results)).unwrap();
    std::fs::write(out_dir.join("writer-stall.svg"), report::svg(&results)).unwrap();
    println!(
        "\nwrote {0}/freezefs-bench.json and {0}/writer-stall.svg",
        out_dir.display()
    );
}
