//! freezefs(8): freeze a filesystem with a deadline that outlives this command.

use freezefs_cli::messages as cli;
use freezefs_cli::{exit, guard, listing, run_frozen};

use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use freezefs::{FreezeState, Timeout};

const HELP: &str = "\
Usage:
  freezefs [-t timeout] mount_point...  freeze; several are frozen all or nothing,
                                        under one deadline; returns at once
  freezefs [-v] [-t timeout] [-C dir] mount_point... -- command [arg...]
                                        freeze, run command, thaw when it exits;
                                        its exit status if every freeze held
                                        throughout, else 3
  freezefs -q mount_point               is it frozen? (exit 0 frozen, 1 not, 2 error)
  freezefs -r timeout mount_point       give a frozen filesystem a new timeout, from now
  freezefs -l [--json]                  list every frozen filesystem
  freezefs --guard                      thaw freezes other tools forget, until
                                        SIGTERM (freezefs-guard.service runs it)

Options:
  -t, --timeout SECONDS  thaw by itself after SECONDS; 0 (the default) takes
                         freezefs_default_timeout from the vfs: stanza of
                         /etc/sysconfigtab (60 s if unset); negative: never
  -q, --query            report whether mount_point is frozen
  -r, --reset SECONDS    reset the timeout of a frozen mount_point (same rules
                         as -t, counted from now)
  -v, --verbose          with a freeze: print the deadline it got
  -C, --directory DIR    with -- command: run it in DIR (default /)
  -l, --list             list frozen filesystems: mount point, device, since,
                         timeout, time left, freezing pid, holder pid;
                         prints nothing when none is frozen
      --json             with -l: as a JSON array
      --guard            watch every local filesystem; thaw a freeze made by
                         another tool once it has lasted
                         freezefs_foreign_max_timeout (vfs: stanza, 600 s if
                         unset; 0: only report it)
  -h, --help             show this help
  -V, --version          show the version

Short options bundle (-lq is -l -q). A freeze is kept by the freezefs
holder process: it thaws at the deadline even though this command has
exited. Thaw earlier with thawfs(8). /, /usr and /var are never frozen: the
system runs from them. Every operation needs root (or CAP_SYS_ADMIN).";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Freeze,
    Query,
    Reset,
    List,
    Guard,
}

struct Options {
    mode: Mode,
    timeout: Timeout,
    json: bool,
    verbose: bool,
    paths: Vec<PathBuf>,
    /// `-- command [arg...]`, and `-C`'s directory.
    command: Option<(Vec<OsString>, PathBuf)>,
}

fn parse_timeout(value: &OsStr) -> Result<Timeout, String> {
    value
        .to_str()
        .and_then(|v| v.trim().parse::<i32>().ok())
        .map(Timeout::from_c)
        .ok_or_else(|| {
            format!(
                "invalid timeout '{}': give whole seconds (0: the default; negative: no timeout)",
                value.to_string_lossy()
            )
        })
}

/// What the command line asked for, before the checks of [`parse`].
#[derive(Default)]
struct Given {
    /// Each mode option, as spelled, in order.
    modes: Vec<(Mode, String)>,
    timeout: Option<Timeout>,
    reset_to: Option<Timeout>,
    json: bool,
    verbose: bool,
    paths: Vec<PathBuf>,
    command: Option<Vec<OsString>>,
    directory: Option<PathBuf>,
}

/// A usage error, or `Ok(0)` after --help or --version.
type Stop = Result<i32, String>;

/// Reads the arguments getopt's way: short options bundle (`-lq`), and a
/// short option's value may follow it (`-t5`) or be the next argument.
fn parse(args: Vec<OsString>) -> Result<Options, Stop> {
    let mut given = Given::default();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        let bytes = arg.as_bytes();
        if bytes == b"--" && !given.paths.is_empty() {
            // After mount points: the command to run while they are frozen.
            given.command = Some(args.by_ref().collect());
        } else if bytes == b"--" {
            given.paths.extend(args.by_ref().map(PathBuf::from));
        } else if let Some(long) = bytes.strip_prefix(b"--") {
            let (name, inline) = match long.iter().position(|&b| b == b'=') {
                Some(i) => (&long[..i], Some(OsStr::from_bytes(&long[i + 1..]))),
                None => (long, None),
            };
            let name = String::from_utf8_lossy(name).into_owned();
            let mut value = |what: &str| -> Result<OsString, Stop> {
                inline
                    .map(OsStr::to_os_string)
                    .or_else(|| args.next())
                    .ok_or_else(|| Err(format!("option --{name} needs {what}")))
            };
            match name.as_str() {
                "timeout" => {
                    given.timeout =
                        Some(parse_timeout(&value("a timeout in seconds")?).map_err(Err)?)
                }
                "directory" => given.directory = Some(PathBuf::from(value("a directory")?)),
                "reset" => {
                    given.reset_to =
                        Some(parse_timeout(&value("a timeout in seconds")?).map_err(Err)?);
                    given.modes.push((Mode::Reset, "--reset".into()));
                }
                _ if inline.is_some() => {
                    return Err(Err(format!("option --{name} takes no value")));
                }
                "help" | "version" => return Err(Ok(help_or_version(&name))),
                "query" => given.modes.push((Mode::Query, "--query".into())),
                "list" => given.modes.push((Mode::List, "--list".into())),
                "guard" => given.modes.push((Mode::Guard, "--guard".into())),
                "json" => given.json = true,
                "verbose" => given.verbose = true,
                _ => return Err(Err(format!("unknown option '--{name}'"))),
            }
        } else if bytes.len() > 1 && bytes[0] == b'-' {
            let mut i = 1;
            while i < bytes.len() {
                let flag = bytes[i] as char;
                i += 1;
                match flag {
                    'h' => return Err(Ok(help_or_version("help"))),
                    'V' => return Err(Ok(help_or_version("version"))),
                    'q' => given.modes.push((Mode::Query, "-q".into())),
                    'l' => given.modes.push((Mode::List, "-l".into())),
                    'v' => given.verbose = true,
                    'C' => {
                        let value = if i < bytes.len() {
                            OsStr::from_bytes(&bytes[i..]).to_os_string()
                        } else {
                            args.next()
                                .ok_or_else(|| Err("option -C needs a directory".to_string()))?
                        };
                        i = bytes.len();
                        given.directory = Some(PathBuf::from(value));
                    }
                    't' | 'r' => {
                        let value = if i < bytes.len() {
                            OsStr::from_bytes(&bytes[i..]).to_os_string()
                        } else {
                            args.next().ok_or_else(|| {
                                Err(format!("option -{flag} needs a timeout in seconds"))
                            })?
                        };
                        i = bytes.len();
                        let timeout = parse_timeout(&value).map_err(Err)?;
                        if flag == 't' {
                            given.timeout = Some(timeout);
                        } else {
                            given.reset_to = Some(timeout);
                            given.modes.push((Mode::Reset, "-r".into()));
                        }
                    }
                    _ => {
                        let shown = String::from_utf8_lossy(&bytes[i - 1..])
                            .chars()
                            .next()
                            .unwrap_or('?');
                        return Err(Err(format!("unknown option '-{shown}'")));
                    }
                }
            }
        } else {
            given.paths.push(PathBuf::from(arg));
        }
    }
    check(given)
}

fn help_or_version(which: &str) -> i32 {
    if which == "help" {
        println!("{HELP}");
    } else {
        println!("{}", cli::version("freezefs"));
    }
    0
}

/// The combinations that make sense, each refusal naming the options.
fn check(given: Given) -> Result<Options, Stop> {
    if let [(first, first_name), rest @ ..] = given.modes.as_slice() {
        if let Some((_, other)) = rest.iter().find(|(m, _)| m != first) {
            return Err(Err(format!(
                "options {first_name} and {other} cannot be combined"
            )));
        }
    }
    let mode = given.modes.first().map_or(Mode::Freeze, |(m, _)| *m);
    let named = |m: Mode| {
        given
            .modes
            .iter()
            .find(|(n, _)| *n == m)
            .map_or(String::new(), |(_, s)| s.clone())
    };
    if given.json && mode != Mode::List {
        return Err(Err("--json goes with -l: freezefs -l --json".into()));
    }
    if given.timeout.is_some() && mode != Mode::Freeze {
        return Err(Err(format!(
            "-t goes with a freeze, not with {}",
            named(mode)
        )));
    }
    if given.verbose && mode != Mode::Freeze {
        return Err(Err(format!(
            "-v goes with a freeze, not with {}",
            named(mode)
        )));
    }
    if given.command.is_some() && mode != Mode::Freeze {
        return Err(Err(format!(
            "-- command goes with a freeze, not with {}",
            named(mode)
        )));
    }
    if given.directory.is_some() && given.command.is_none() {
        return Err(Err("-C goes with -- command".into()));
    }
    if given.command.as_ref().is_some_and(Vec::is_empty) {
        return Err(Err("no command given after --".into()));
    }
    let directory = given.directory.unwrap_or_else(|| PathBuf::from("/"));
    match mode {
        Mode::List if !given.paths.is_empty() => Err(Err("-l takes no mount point".into())),
        Mode::Guard if !given.paths.is_empty() => Err(Err(
            "--guard takes no mount point: it watches every local filesystem".into(),
        )),
        Mode::Freeze | Mode::Query | Mode::Reset if given.paths.is_empty() => {
            Err(Err("no mount point given".into()))
        }
        Mode::Query | Mode::Reset if given.paths.len() > 1 => Err(Err(format!(
            "one mount point at a time with {}",
            named(mode)
        ))),
        _ => Ok(Options {
            mode,
            timeout: given.reset_to.or(given.timeout).unwrap_or(Timeout::Default),
            json: given.json,
            verbose: given.verbose,
            paths: given.paths,
            command: given.command.map(|c| (c, directory)),
        }),
    }
}

/// `-v`: the deadline the freeze got, on stdout.
fn say_deadline(path: &std::path::Path) {
    match freezefs::status(path) {
        Ok(s) => match (s.timeout, s.time_left) {
            (Some(Timeout::Seconds(n)), Some(left)) => println!(
                "{}: frozen until {} (timeout {n} s); thaw earlier with thawfs",
                path.display(),
                cli::iso_utc(std::time::SystemTime::now() + left)
            ),
            _ => println!(
                "{}: frozen with no timeout: it stays frozen until thawfs thaws it",
                path.display()
            ),
        },
        Err(e) => cli::complain("freezefs", cli::Action::Query, path, &e),
    }
}

fn main() {
    let args = cli::args();
    // With -- command, freezefs's own failures are 125, as env(1) says.
    let with_command = args.iter().any(|a| a == "--");
    let options = match parse(args) {
        Ok(options) => options,
        Err(Ok(code)) => std::process::exit(code),
        Err(Err(message)) => {
            let code = cli::usage_error("freezefs", &message);
            std::process::exit(if with_command { exit::FAILED } else { code })
        }
    };
    if matches!(options.mode, Mode::Freeze | Mode::Reset)
        && matches!(options.timeout, Timeout::Default)
    {
        // Said before the freeze: nothing is printed while frozen.
        if let Some(problem) = freezefs::default_timeout_problem() {
            eprintln!(
                "freezefs: warning: {problem}; the default timeout is {} s",
                freezefs::FALLBACK_SECONDS
            );
        }
    }
    let code = match options.mode {
        Mode::Freeze if options.command.is_some() => {
            let (mut words, dir) = options.command.expect("checked");
            let program = words.remove(0);
            run_frozen::run(
                &options.paths,
                options.timeout,
                options.verbose,
                run_frozen::Cmd {
                    program,
                    args: words,
                    dir,
                },
            )
        }
        Mode::Freeze if options.paths.len() == 1 => {
            let path = &options.paths[0];
            match freezefs::freeze(path, options.timeout) {
                Ok(()) => {
                    if options.verbose {
                        say_deadline(path);
                    }
                    0
                }
                Err(e) => {
                    cli::complain("freezefs", cli::Action::Freeze, path, &e);
                    1
                }
            }
        }
        Mode::Freeze => match freezefs::freeze_all(&options.paths, options.timeout) {
            Ok(()) => {
                if options.verbose {
                    options.paths.iter().for_each(|p| say_deadline(p));
                }
                0
            }
            Err(e) => {
                eprintln!(
                    "freezefs: {}; nothing was frozen",
                    cli::whole(cli::Action::Freeze, &e)
                );
                1
            }
        },
        Mode::Reset => {
            let path = &options.paths[0];
            match freezefs::reset_timeout(path, options.timeout) {
                Ok(()) => 0,
                Err(e) => {
                    cli::complain("freezefs", cli::Action::Reset, path, &e);
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
                    cli::complain("freezefs", cli::Action::Query, path, &e);
                    2
                }
            }
        }
        Mode::Guard => guard::run(),
        Mode::List => match freezefs::listing() {
            Ok(listing) => {
                if options.json {
                    listing::print_json(&listing.frozen);
                } else {
                    listing::print_table(&listing.frozen);
                }
                // What could not be told hides nothing else, and says so.
                for problem in &listing.problems {
                    eprintln!("freezefs: {}", cli::reason(cli::Action::List, problem));
                }
                if listing.problems.is_empty() { 0 } else { 2 }
            }
            Err(e) => {
                eprintln!("freezefs: {}", cli::reason(cli::Action::List, &e));
                1
            }
        },
    };
    std::process::exit(code);
}
