//! freezefs(8): freeze a filesystem with a deadline that outlives this command.

#[path = "common/cli.rs"]
mod cli;

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use freezefs::{FreezeState, Status, Timeout};

const HELP: &str = "\
Usage:
  freezefs [-t timeout] mount_point...  freeze; several are frozen all or nothing,
                                        under one deadline; returns at once
  freezefs -q mount_point               is it frozen? (exit 0 frozen, 1 not, 2 error)
  freezefs -r timeout mount_point       give a frozen filesystem a new timeout, from now
  freezefs -l [--json]                  list every frozen filesystem

Options:
  -t, --timeout SECONDS  thaw by itself after SECONDS; 0 (the default) takes
                         freezefs_default_timeout from the vfs: stanza of
                         /etc/sysconfigtab (60 s if unset); negative: never
  -q, --query            report whether mount_point is frozen
  -r, --reset SECONDS    reset the timeout of a frozen mount_point (same rules
                         as -t, counted from now)
  -l, --list             list frozen filesystems: mount point, device, since,
                         timeout, time left, freezing pid, holder pid
      --json             with -l: as a JSON array
  -h, --help             show this help
  -V, --version          show the version

A freeze is kept by the freezefs holder process: it thaws at the deadline
even though this command has exited. Thaw earlier with thawfs(8).
/, /usr and /var are never frozen.";

enum Mode {
    Freeze,
    Query,
    Reset,
    List,
}

struct Options {
    mode: Mode,
    timeout: Timeout,
    json: bool,
    paths: Vec<PathBuf>,
}

fn parse_timeout(value: &OsStr) -> Result<Timeout, String> {
    value
        .to_str()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map(Timeout::from_c)
        .ok_or_else(|| format!("invalid timeout '{}'", value.to_string_lossy()))
}

fn parse(args: Vec<OsString>) -> Result<Options, Result<i32, String>> {
    let mut options = Options {
        mode: Mode::Freeze,
        timeout: Timeout::Default,
        json: false,
        paths: Vec::new(),
    };
    let mut timeout_given = false;
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        match bytes {
            b"-h" | b"--help" => {
                println!("{HELP}");
                return Err(Ok(0));
            }
            b"-V" | b"--version" => {
                println!("{}", cli::version("freezefs"));
                return Err(Ok(0));
            }
            b"-q" | b"--query" => options.mode = Mode::Query,
            b"-r" | b"--reset" => {
                let value = args
                    .next()
                    .ok_or_else(|| Err("option -r needs a timeout in seconds".to_string()))?;
                options.timeout = parse_timeout(&value).map_err(Err)?;
                options.mode = Mode::Reset;
            }
            b"-l" | b"--list" => options.mode = Mode::List,
            b"--json" => options.json = true,
            b"-t" | b"--timeout" => {
                let value = args
                    .next()
                    .ok_or_else(|| Err("option -t needs a timeout in seconds".to_string()))?;
                options.timeout = parse_timeout(&value).map_err(Err)?;
                timeout_given = true;
            }
            b"--" => options.paths.extend(args.by_ref().map(PathBuf::from)),
            _ if bytes.starts_with(b"--timeout=") => {
                options.timeout = parse_timeout(OsStr::from_bytes(&bytes[10..])).map_err(Err)?;
                timeout_given = true;
            }
            _ if bytes.starts_with(b"-t") => {
                options.timeout = parse_timeout(OsStr::from_bytes(&bytes[2..])).map_err(Err)?;
                timeout_given = true;
            }
            _ if bytes.starts_with(b"-") && bytes.len() > 1 => {
                return Err(Err(format!("unknown option '{}'", arg.to_string_lossy())));
            }
            _ => options.paths.push(PathBuf::from(arg)),
        }
    }
    match options.mode {
        Mode::List if !options.paths.is_empty() => Err(Err("-l takes no mount point".into())),
        Mode::Freeze | Mode::Query | Mode::Reset if options.paths.is_empty() => {
            Err(Err("no mount point given".into()))
        }
        Mode::Query | Mode::Reset if options.paths.len() > 1 => {
            Err(Err("one mount point at a time with -q or -r".into()))
        }
        Mode::Query | Mode::List | Mode::Reset if timeout_given => {
            Err(Err("-t goes with a freeze".into()))
        }
        _ if options.json && !matches!(options.mode, Mode::List) => {
            Err(Err("--json goes with -l".into()))
        }
        _ => Ok(options),
    }
}

fn seconds(d: std::time::Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn timeout_text(status: &Status) -> String {
    match status.timeout {
        Some(Timeout::Seconds(n)) => format!("{n}s"),
        Some(_) => "none".into(),
        None => "-".into(),
    }
}

fn state_text(state: FreezeState) -> &'static str {
    match state {
        FreezeState::Thawed => "thawed",
        FreezeState::Freezing => "freezing",
        FreezeState::Frozen => "frozen",
    }
}

fn print_table(all: &[Status]) {
    if all.is_empty() {
        println!("no frozen filesystems");
        return;
    }
    println!(
        "{:<32} {:<8} {:<6} {:<8} {:<20} {:>8} {:>9} {:>7} {:>7}",
        "MOUNTPOINT", "DEVICE", "TYPE", "STATE", "SINCE", "TIMEOUT", "LEFT", "PID", "HOLDER"
    );
    for s in all {
        println!(
            "{:<32} {:<8} {:<6} {:<8} {:<20} {:>8} {:>9} {:>7} {:>7}",
            s.mount_point.display(),
            s.device.to_string(),
            s.fs_type,
            state_text(s.state),
            s.frozen_since.map_or("-".into(), cli::iso_utc),
            timeout_text(s),
            s.time_left.map_or("-".into(), seconds),
            owner_text(s),
            s.holder_pid.map_or("-".into(), |p| p.to_string()),
        );
    }
}

/// The freezing pid; "unknown" for another tool's freeze.
fn owner_text(status: &Status) -> String {
    match status.pid {
        Some(pid) => pid.to_string(),
        None if status.frozen_by_other_tool => "unknown".into(),
        None => "-".into(),
    }
}

fn print_json(all: &[Status]) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "null".into());
    let items: Vec<String> = all
        .iter()
        .map(|s| {
            format!(
                "{{\"mount_point\":{},\"device\":\"{}\",\"fs_type\":{},\"state\":\"{}\",\"frozen_since\":{},\"frozen_since_unix\":{},\"timeout\":{},\"time_left_ms\":{},\"pid\":{},\"holder_pid\":{},\"frozen_by_other_tool\":{}}}",
                cli::json_string(&s.mount_point.to_string_lossy()),
                s.device,
                cli::json_string(&s.fs_type),
                state_text(s.state),
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
            )
        })
        .collect();
    println!("[{}]", items.join(","));
}

fn main() {
    let options = match parse(cli::args()) {
        Ok(options) => options,
        Err(Ok(code)) => std::process::exit(code),
        Err(Err(message)) => std::process::exit(cli::usage_error("freezefs", &message)),
    };
    let code = match options.mode {
        Mode::Freeze if options.paths.len() == 1 => {
            let path = &options.paths[0];
            match freezefs::freeze(path, options.timeout) {
                Ok(()) => 0,
                Err(e) => {
                    cli::complain("freezefs", path, &e);
                    1
                }
            }
        }
        Mode::Freeze => match freezefs::freeze_all(&options.paths, options.timeout) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("freezefs: {e}; nothing was frozen");
                1
            }
        },
        Mode::Reset => {
            let path = &options.paths[0];
            match freezefs::reset_timeout(path, options.timeout) {
                Ok(()) => 0,
                Err(e) => {
                    cli::complain("freezefs", path, &e);
                    1
                }
            }
        }
        Mode::Query => {
            let path = &options.paths[0];
            match freezefs::status(path) {
                Ok(s) if s.state == FreezeState::Frozen && s.frozen_by_other_tool => {
                    println!("{} is frozen (by another tool)", path.display());
                    0
                }
                Ok(s) if s.state == FreezeState::Frozen => {
                    println!("{} is frozen", path.display());
                    0
                }
                Ok(_) => {
                    println!("{} is not frozen", path.display());
                    1
                }
                Err(e) => {
                    cli::complain("freezefs", path, &e);
                    2
                }
            }
        }
        Mode::List => match freezefs::list() {
            Ok(all) if options.json => {
                print_json(&all);
                0
            }
            Ok(all) => {
                print_table(&all);
                0
            }
            Err(e) => {
                eprintln!("freezefs: {}", cli::reason(&e));
                1
            }
        },
    };
    std::process::exit(code);
}
