//! The benchmark's results: a table, JSON, and one plot (SVG).

use std::fmt::Write as _;

use crate::fast_path::{self, FastPath};
use crate::measure::{self, Method, Samples, Stall, Truth};

pub(crate) struct Results {
    pub machine: String,
    pub smoke: bool,
    pub stalls: Vec<Stall>,
    pub cycles: Vec<(&'static str, Samples)>,
    pub timeout_errors: Samples,
    /// (mount count, QUERY samples, mountinfo read samples)
    pub query: Vec<(usize, Samples, Samples)>,
    /// (mount count, `freezefs -l` samples)
    pub list: (usize, Samples),
    /// QUERY by probe, and another tool's thaw seen.
    pub truth: Truth,
    /// (freezefs_all skew, fsfreeze loop skew, freezefs_all call) in ms, and the dirty size.
    pub skew: (f64, f64, f64),
    pub skew_dirty_mib: u64,
    /// The fast path through the C ABI.
    pub fast_path: FastPath,
}

pub(crate) struct Goal {
    pub what: String,
    pub measured: String,
    pub met: bool,
}

fn stall(r: &Results, method: Method, mib: u64) -> Option<&Stall> {
    r.stalls
        .iter()
        .find(|s| s.method == method && s.dirty_mib == mib)
}

pub(crate) fn goals(r: &Results) -> Vec<Goal> {
    let mut goals = Vec::new();
    let top = r.stalls.iter().map(|s| s.dirty_mib).max().unwrap_or(0);
    if let (Some(ours), Some(raw)) = (stall(r, Method::Freezefs, top), stall(r, Method::Raw, top)) {
        let ratio = ours.stall_ms / raw.stall_ms;
        goals.push(Goal {
            what: format!("writer stall at {top} MiB dirty <= 10% of raw"),
            measured: format!(
                "{:.1} ms vs {:.1} ms = {:.0}%",
                ours.stall_ms,
                raw.stall_ms,
                ratio * 100.0
            ),
            met: ratio <= 0.10,
        });
    }
    let p50 = |name: &str| {
        r.cycles
            .iter()
            .find(|c| c.0 == name)
            .map(|c| c.1.quantile(0.5))
    };
    if let (Some(untimed), Some(empty), Some(one), Some(alone)) = (
        p50("freezefs untimed"),
        p50(measure::EMPTY_HOOK_DIR),
        p50(measure::ONE_HOOK),
        p50(measure::HOOK_ALONE),
    ) {
        goals.push(Goal {
            what: "empty hook directory adds <= 0.1 ms to a cycle".into(),
            measured: format!("{:.0} us vs {untimed:.0} us", empty),
            met: empty - untimed <= 100.0,
        });
        // Two runs per cycle: freeze, and thaw.
        let per_run = (one - untimed - 2.0 * alone) / 2.0;
        goals.push(Goal {
            what: "each hook run costs <= 1 ms beyond the hook's own time".into(),
            measured: format!(
                "{per_run:.0} us ({one:.0} us cycle, {untimed:.0} us without, {alone:.0} us the hook alone)"
            ),
            met: per_run <= 1000.0,
        });
    }
    let max_ms = r.timeout_errors.max() / 1e3;
    goals.push(Goal {
        what: "timeout error <= 50 ms max".into(),
        measured: format!("{max_ms:.2} ms over {} trials", r.timeout_errors.0.len()),
        met: max_ms <= 50.0,
    });
    if let (Some(few), Some(many)) = (r.query.first(), r.query.last()) {
        let (a, b) = (few.1.quantile(0.5), many.1.quantile(0.5));
        goals.push(Goal {
            what: "QUERY flat from few to many mounts (<= 1.5x)".into(),
            measured: format!("{:.2}x", b / a),
            met: b / a <= 1.5,
        });
    }
    let t = &r.truth;
    goals.push(Goal {
        what: "QUERY without a record <= 3 ms (holder to start)".into(),
        measured: format!(
            "p50 {:.2} ms, max {:.2} ms",
            t.probe_cold.quantile(0.5) / 1e3,
            t.probe_cold.max() / 1e3
        ),
        met: t.probe_cold.max() <= 3000.0,
    });
    goals.push(Goal {
        what: "another tool's thaw seen by QUERY <= 10 ms".into(),
        measured: format!(
            "p50 {:.2} ms, max {:.2} ms over {}",
            t.other_thaw_seen.quantile(0.5) / 1e3,
            t.other_thaw_seen.max() / 1e3,
            t.other_thaw_seen.0.len()
        ),
        met: t.other_thaw_seen.max() <= 10_000.0,
    });
    goals.push(Goal {
        what: format!("freezefs -l at {} mounts <= 50 ms", r.list.0),
        measured: format!(
            "p50 {:.2} ms, p99 {:.2} ms",
            r.list.1.quantile(0.5) / 1e3,
            r.list.1.quantile(0.99) / 1e3
        ),
        met: r.list.1.quantile(0.5) <= 50_000.0,
    });
    goals.push(Goal {
        what: "freeze_all skew <= 10 ms".into(),
        measured: format!("{:.2} ms (fsfreeze loop {:.1} ms)", r.skew.0, r.skew.1),
        met: r.skew.0 <= 10.0,
    });
    for (what, measured, met) in fast_path::goals(&r.fast_path) {
        goals.push(Goal {
            what,
            measured,
            met,
        });
    }
    goals
}

pub(crate) fn table(r: &Results) -> String {
    let mut t = String::new();
    let _ = writeln!(
        t,
        "freezefs-bench{} on {}",
        if r.smoke { " (smoke)" } else { "" },
        r.machine
    );
    let _ = writeln!(
        t,
        "\nwriter stall (longest gap of a writer appending every 0.5 ms) and call-to-frozen time, ext4:"
    );
    let _ = writeln!(
        t,
        "{:>10}  {:>22} {:>22} {:>22}",
        "dirty MiB", "raw FIFREEZE", "fsfreeze -f", "freezefs"
    );
    let mut sizes: Vec<u64> = r.stalls.iter().map(|s| s.dirty_mib).collect();
    sizes.dedup();
    for mib in sizes {
        let cell = |m| {
            stall(r, m, mib).map_or("-".to_string(), |s| {
                format!("{:.1} ms / {:.1} ms", s.stall_ms, s.to_frozen_ms)
            })
        };
        let _ = writeln!(
            t,
            "{mib:>10}  {:>22} {:>22} {:>22}",
            cell(Method::Raw),
            cell(Method::Fsfreeze),
            cell(Method::Freezefs)
        );
    }
    let _ = writeln!(t, "            (each cell: stall / call-to-frozen)");
    let _ = writeln!(t, "\nfreeze+thaw cycle, idle ext4 (microseconds):");
    let _ = writeln!(
        t,
        "{:<34} {:>8} {:>8} {:>8} {:>6}",
        "", "p50", "mean", "p99", "n"
    );
    for (name, s) in &r.cycles {
        let _ = writeln!(
            t,
            "{name:<34} {:>8.0} {:>8.0} {:>8.0} {:>6}",
            s.quantile(0.5),
            s.mean(),
            s.quantile(0.99),
            s.0.len()
        );
    }
    let e = &r.timeout_errors;
    let _ = writeln!(
        t,
        "\ntimeout accuracy |thaw - deadline| over {} trials: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        e.0.len(),
        e.quantile(0.5) / 1e3,
        e.quantile(0.99) / 1e3,
        e.max() / 1e3
    );
    let _ = writeln!(
        t,
        "\nQUERY latency (microseconds), private mount namespace:"
    );
    for (mounts, q, mi) in &r.query {
        let _ = writeln!(
            t,
            "{mounts:>6} mounts: QUERY p50 {:.1} p99 {:.1}   (reading mountinfo once: p50 {:.0})",
            q.quantile(0.5),
            q.quantile(0.99),
            mi.quantile(0.5)
        );
    }
    let truth = &r.truth;
    let _ = writeln!(
        t,
        "\nkernel truth: QUERY of a thawed filesystem with no record (the holder's probe): p50 {:.1} us warm, {:.2} ms when a holder starts; another tool's thaw seen by QUERY after p50 {:.2} ms (max {:.2}); freezefs -l at {} mounts p50 {:.2} ms",
        truth.probe_warm.quantile(0.5),
        truth.probe_cold.quantile(0.5) / 1e3,
        truth.other_thaw_seen.quantile(0.5) / 1e3,
        truth.other_thaw_seen.max() / 1e3,
        r.list.0,
        r.list.1.quantile(0.5) / 1e3
    );
    let _ = writeln!(
        t,
        "\nfreeze skew, 4 ext4 with {} MiB dirty each (first to last FIFREEZE): freezefs_all {:.2} ms (call {:.0} ms); fsfreeze -f loop {:.1} ms",
        r.skew_dirty_mib, r.skew.0, r.skew.2, r.skew.1
    );
    t.push_str(&fast_path::table(&r.fast_path));
    let _ = writeln!(t, "\ngoals:");
    for g in goals(r) {
        let _ = writeln!(
            t,
            "  [{}] {}: {}",
            if g.met { "met " } else { "MISS" },
            g.what,
            g.measured
        );
    }
    t
}

fn json_str(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn samples_json(s: &Samples) -> String {
    format!(
        "{{\"n\":{},\"p50\":{:.3},\"p99\":{:.3},\"mean\":{:.3},\"max\":{:.3}}}",
        s.0.len(),
        s.quantile(0.5),
        s.quantile(0.99),
        s.mean(),
        s.max()
    )
}

pub(crate) fn json(r: &Results) -> String {
    let stalls: Vec<String> = r
        .stalls
        .iter()
        .map(|s| {
            format!(
                "{{\"method\":{},\"dirty_mib\":{},\"stall_ms\":{:.3},\"to_frozen_ms\":{:.3}}}",
                json_str(s.method.name()),
                s.dirty_mib,
                s.stall_ms,
                s.to_frozen_ms
            )
        })
        .collect();
    let cycles: Vec<String> = r
        .cycles
        .iter()
        .map(|(n, s)| format!("{{\"what\":{},\"us\":{}}}", json_str(n), samples_json(s)))
        .collect();
    let query: Vec<String> = r
        .query
        .iter()
        .map(|(m, q, mi)| {
            format!(
                "{{\"mounts\":{m},\"query_us\":{},\"mountinfo_read_us\":{}}}",
                samples_json(q),
                samples_json(mi)
            )
        })
        .collect();
    let goals: Vec<String> = goals(r)
        .iter()
        .map(|g| {
            format!(
                "{{\"goal\":{},\"measured\":{},\"met\":{}}}",
                json_str(&g.what),
                json_str(&g.measured),
                g.met
            )
        })
        .collect();
    format!(
        "{{\"machine\":{},\"smoke\":{},\"writer_stall\":[{}],\"cycles\":[{}],\"timeout_error_us\":{},\"query\":[{}],\"list_us\":{{\"mounts\":{},\"us\":{}}},\"kernel_truth_us\":{{\"probe_warm\":{},\"probe_cold\":{},\"other_thaw_seen\":{}}},\"skew_ms\":{{\"dirty_mib\":{},\"freezefs_all\":{:.3},\"fsfreeze_loop\":{:.3},\"freezefs_all_call\":{:.3}}},\"goals\":[{}]}}\n",
        json_str(&r.machine),
        r.smoke,
        stalls.join(","),
        cycles.join(","),
        samples_json(&r.timeout_errors),
        query.join(","),
        r.list.0,
        samples_json(&r.list.1),
        samples_json(&r.truth.probe_warm),
        samples_json(&r.truth.probe_cold),
        samples_json(&r.truth.other_thaw_seen),
        r.skew_dirty_mib,
        r.skew.0,
        r.skew.1,
        r.skew.2,
        goals.join(",")
    )
}

/// Writer stall against dirty size, one line per method.
pub(crate) fn svg(r: &Results) -> String {
    let (w, h, left, bottom, top, right) = (640.0, 400.0, 60.0, 50.0, 40.0, 150.0);
    let max_x = r
        .stalls
        .iter()
        .map(|s| s.dirty_mib)
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let max_y = r.stalls.iter().map(|s| s.stall_ms).fold(1.0, f64::max) * 1.1;
    let x = |mib: f64| left + mib / max_x * (w - left - right);
    let y = |ms: f64| h - bottom - ms / max_y * (h - bottom - top);
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"22\" font-size=\"15\">Writer stall during a freeze, ext4</text>\n\
         <line x1=\"{left}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>\n\
         <line x1=\"{left}\" y1=\"{top}\" x2=\"{left}\" y2=\"{}\" stroke=\"black\"/>\n\
         <text x=\"{}\" y=\"{}\">dirty data (MiB)</text>\n\
         <text x=\"14\" y=\"{}\" transform=\"rotate(-90 14 {})\">longest writer gap (ms)</text>\n",
        left,
        h - bottom,
        w - right,
        h - bottom,
        h - bottom,
        (w - right) / 2.0,
        h - 12.0,
        h / 2.0 + 60.0,
        h / 2.0 + 60.0
    );
    for i in 0..=4 {
        let v = max_y * i as f64 / 4.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{v:.0}</text>",
            left - 6.0,
            y(v) + 4.0
        );
    }
    let mut sizes: Vec<u64> = r.stalls.iter().map(|s| s.dirty_mib).collect();
    sizes.dedup();
    for mib in &sizes {
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{mib}</text>",
            x(*mib as f64),
            h - bottom + 16.0
        );
    }
    for (i, (method, color)) in [
        (Method::Raw, "#c0392b"),
        (Method::Fsfreeze, "#7f8c8d"),
        (Method::Freezefs, "#2471a3"),
    ]
    .iter()
    .enumerate()
    {
        let points: Vec<String> = r
            .stalls
            .iter()
            .filter(|st| st.method == *method)
            .map(|st| format!("{:.1},{:.1}", x(st.dirty_mib as f64), y(st.stall_ms)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"2.5\" points=\"{}\"/>",
            points.join(" ")
        );
        let ly = top + 20.0 + i as f64 * 20.0;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{color}\" stroke-width=\"3\"/><text x=\"{}\" y=\"{}\">{}</text>",
            w - right + 10.0,
            w - right + 30.0,
            w - right + 36.0,
            ly + 4.0,
            method.name()
        );
    }
    s.push_str("</svg>\n");
    s
}
