//! `freezefs -l`: every frozen filesystem, as a table or as JSON.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use freezefs::{FreezeState, Status, Timeout};

use crate::messages as cli;

fn seconds(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn timeout_text(status: &Status) -> String {
    match status.timeout {
        Some(Timeout::Seconds(n)) => format!("{n}s"),
        Some(_) => "none".into(),
        None => "-".into(),
    }
}

/// `freezefs -l`: a header and one row per frozen filesystem, each column
/// as wide as its widest cell; mount points escaped as findmnt escapes
/// them, so that a row always splits into its columns. Nothing at all when
/// nothing is frozen.
pub fn print_table(all: &[Status]) {
    if all.is_empty() {
        return;
    }
    let header = [
        "MOUNTPOINT",
        "DEVICE",
        "TYPE",
        "STATE",
        "SINCE",
        "TIMEOUT",
        "LEFT",
        "PID",
        "HOLDER",
    ];
    let rows: Vec<[String; 9]> = all
        .iter()
        .map(|s| {
            [
                cli::escaped(s.mount_point.as_os_str()),
                s.device.to_string(),
                cli::escaped(OsStr::new(&s.fs_type)),
                FreezeState::name(s.state).to_string(),
                since(s).map_or("-".into(), cli::iso_utc),
                timeout_text(s),
                time_left(s).map_or("-".into(), seconds),
                owner_text(s),
                keeper_pid(s).map_or("-".into(), |p| p.to_string()),
            ]
        })
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            rows.iter()
                .map(|r| r[i].chars().count())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    // Text columns to the left, numbers to the right, as findmnt and ps.
    let right_aligned = [false, false, false, false, false, true, true, true, true];
    let line = |cells: Vec<&str>| {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| match (right_aligned[i], i + 1 == cells.len()) {
                (true, _) => format!("{c:>w$}", w = widths[i]),
                (false, true) => c.to_string(),
                (false, false) => format!("{c:<w$}", w = widths[i]),
            })
            .collect();
        println!("{}", padded.join(" "));
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// Since when it is frozen; for another tool's freeze, since when the
/// guard has seen it frozen.
fn since(status: &Status) -> Option<SystemTime> {
    status
        .frozen_since
        .or(status.foreign.map(|f| f.seen_frozen_since))
}

/// The time until its deadline; for another tool's freeze, until the guard
/// thaws it.
fn time_left(status: &Status) -> Option<Duration> {
    status.time_left.or_else(|| {
        let at = status.foreign?.guard_thaws_at?;
        Some(at.duration_since(SystemTime::now()).unwrap_or_default())
    })
}

/// The process that keeps its deadline: its holder, or the guard.
fn keeper_pid(status: &Status) -> Option<u32> {
    status.holder_pid.or(status.foreign.map(|f| f.guard_pid))
}

/// The freezing pid; "unknown" for another tool's freeze.
fn owner_text(status: &Status) -> String {
    match status.pid {
        Some(pid) => pid.to_string(),
        None if status.frozen_by_other_tool => "unknown".into(),
        None => "-".into(),
    }
}

pub fn print_json(all: &[Status]) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let items: Vec<String> = all
        .iter()
        .map(|s| {
            format!(
                "{{\"mount_point\":{},\"device\":\"{}\",\"fs_type\":{},\"state\":\"{}\",\"frozen_since\":{},\"frozen_since_unix\":{},\"timeout\":{},\"time_left_ms\":{},\"pid\":{},\"holder_pid\":{},\"frozen_by_other_tool\":{},\"seen_frozen_since\":{},\"guard_thaws_at\":{},\"guard_pid\":{},\"holds\":[{}],\"hold_broken\":{}}}",
                cli::json_string(&s.mount_point.to_string_lossy()),
                s.device,
                cli::json_string(&s.fs_type),
                FreezeState::name(s.state),
                opt(s.frozen_since.map(|t| cli::json_string(&cli::iso_utc(t)))),
                opt(s.frozen_since.and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map(|d| format!("{:.3}", d.as_secs_f64()))),
                opt(match s.timeout {
                    Some(Timeout::Seconds(n)) => Some(n.to_string()),
                    _ => None,
                }),
                opt(s.time_left.map(|d| d.as_millis().to_string())),
                opt(s.pid.map(|p| p.to_string())),
                opt(s.holder_pid.map(|p| p.to_string())),
                s.frozen_by_other_tool,
                opt(s.foreign.map(|f| cli::json_string(&cli::iso_utc(f.seen_frozen_since)))),
                opt(s.foreign.and_then(|f| f.guard_thaws_at).map(|t| cli::json_string(&cli::iso_utc(t)))),
                opt(s.foreign.map(|f| f.guard_pid.to_string())),
                s.holds
                    .iter()
                    .map(|h| format!(
                        "{{\"hook\":{},\"pid\":{},\"ready\":{}}}",
                        cli::json_string(&h.name),
                        h.pid,
                        cli::json_string(&h.ready)
                    ))
                    .collect::<Vec<_>>()
                    .join(","),
                opt(s.hold_broken.as_ref().map(|b| format!(
                    "{{\"hook\":{},\"why\":{},\"ended_at\":{},\"held_ms\":{}}}",
                    cli::json_string(&b.hook),
                    cli::json_string(&b.why),
                    opt(b.ended_at.map(|t| cli::json_string(&cli::iso_utc(t)))),
                    opt(b.held_for.map(|d| d.as_millis().to_string())),
                ))),
            )
        })
        .collect();
    println!("[{}]", items.join(","));
}
