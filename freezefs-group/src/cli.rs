//! The command line: `freezefs-group [ETCD OPTIONS] COMMAND ...`, parsed by
//! hand into what each command needs. Every mistake is a usage error (exit 2)
//! that says what was wrong.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::keys::valid_name;

pub(crate) const USAGE: &str = "\
usage: freezefs-group [--endpoints URL[,URL...]] [ETCD OPTIONS] COMMAND ...
  agent  --group G --name NODE [--ttl SECONDS] MOUNT...
  freeze --group G [-t SECONDS] [--ttl SECONDS] [--members N1,N2,...] [-- CMD ARGS...]
  thaw   --group G
  status --group G [--json]
etcd options: --cacert FILE --cert FILE --key FILE --user NAME[:PASSWORD]
  --password-file FILE (or FREEZEFS_ETCD_PASSWORD); FREEZEFS_ETCD_ENDPOINTS
  stands for --endpoints";

/// The TTL of the agents' and the freezing command's leases by default.
pub(crate) const DEFAULT_TTL_S: u32 = 5;
/// The group freeze's timeout by default, as a local freeze's.
pub(crate) const DEFAULT_TIMEOUT_S: u32 = 60;
/// The environment variable standing for `--endpoints`.
pub(crate) const ENDPOINTS_ENV: &str = "FREEZEFS_ETCD_ENDPOINTS";
/// The environment variable holding the etcd password.
pub(crate) const PASSWORD_ENV: &str = "FREEZEFS_ETCD_PASSWORD";

/// How to reach etcd.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct EtcdOptions {
    pub(crate) endpoints: Vec<String>,
    pub(crate) cacert: Option<PathBuf>,
    pub(crate) cert: Option<PathBuf>,
    pub(crate) key: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) password_file: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Command {
    Agent {
        group: String,
        name: String,
        ttl_s: u32,
        mounts: Vec<PathBuf>,
    },
    Freeze {
        group: String,
        timeout_s: u32,
        ttl_s: u32,
        members: Option<Vec<String>>,
        cmd: Vec<OsString>,
    },
    Thaw {
        group: String,
    },
    Status {
        group: String,
        json: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cli {
    pub(crate) etcd: EtcdOptions,
    pub(crate) command: Command,
}

/// True when `--help` or `-h` comes before any `--` (after which a group
/// freeze's command has its own options).
pub(crate) fn asks_for_help(args: &[OsString]) -> bool {
    args.iter()
        .take_while(|a| *a != "--")
        .any(|a| a == "--help" || a == "-h")
}

/// Parses the arguments after the program name; `endpoints_env` is
/// `$FREEZEFS_ETCD_ENDPOINTS`.
pub(crate) fn parse(args: Vec<OsString>, endpoints_env: Option<String>) -> Result<Cli, String> {
    let mut args = Args::new(args);
    let mut etcd = EtcdOptions::default();
    let command = loop {
        let Some(word) = args.next_word()? else {
            return Err("no command given".into());
        };
        match split_option(&word) {
            ("--endpoints", v) => etcd.endpoints = endpoint_list(&args.value(v, "--endpoints")?)?,
            ("--cacert", v) => etcd.cacert = Some(args.value(v, "--cacert")?.into()),
            ("--cert", v) => etcd.cert = Some(args.value(v, "--cert")?.into()),
            ("--key", v) => etcd.key = Some(args.value(v, "--key")?.into()),
            ("--user", v) => {
                let user = args.value(v, "--user")?;
                match user.split_once(':') {
                    Some((name, password)) => {
                        etcd.user = Some(name.into());
                        etcd.password = Some(password.into());
                    }
                    None => etcd.user = Some(user),
                }
            }
            ("--password-file", v) => {
                etcd.password_file = Some(args.value(v, "--password-file")?.into())
            }
            ("agent", None) => break agent(&mut args)?,
            ("freeze", None) => break freeze(&mut args)?,
            ("thaw", None) => break thaw(&mut args)?,
            ("status", None) => break status(&mut args)?,
            _ if word.starts_with('-') => return Err(format!("unknown option {word}")),
            _ => return Err(format!("unknown command {word}")),
        }
    };
    if etcd.endpoints.is_empty() {
        match endpoints_env.filter(|e| !e.is_empty()) {
            Some(env) => etcd.endpoints = endpoint_list(&env)?,
            None => {
                return Err(format!(
                    "no etcd endpoints: give --endpoints or set {ENDPOINTS_ENV}"
                ));
            }
        }
    }
    if etcd.cert.is_some() != etcd.key.is_some() {
        return Err("--cert and --key go together".into());
    }
    if etcd.password.is_some() && etcd.password_file.is_some() {
        return Err("a password in --user and a --password-file: give one".into());
    }
    Ok(Cli { etcd, command })
}

fn agent(args: &mut Args) -> Result<Command, String> {
    let (mut group, mut name, mut ttl_s, mut mounts) = (None, None, DEFAULT_TTL_S, Vec::new());
    while let Some(word) = args.next_word()? {
        match split_option(&word) {
            ("--group", v) => group = Some(a_name(args.value(v, "--group")?, "--group")?),
            ("--name", v) => name = Some(a_name(args.value(v, "--name")?, "--name")?),
            ("--ttl", v) => ttl_s = seconds(&args.value(v, "--ttl")?, "--ttl")?,
            ("--", None) => mounts.extend(args.rest().into_iter().map(PathBuf::from)),
            _ if word.starts_with('-') => return Err(format!("agent: unknown option {word}")),
            _ => mounts.push(PathBuf::from(word)),
        }
    }
    if mounts.is_empty() {
        return Err("agent: no mount point given".into());
    }
    Ok(Command::Agent {
        group: group.ok_or("agent: --group is required")?,
        name: name.ok_or("agent: --name is required")?,
        ttl_s: lease_ttl(ttl_s)?,
        mounts,
    })
}

fn freeze(args: &mut Args) -> Result<Command, String> {
    let (mut group, mut timeout_s, mut ttl_s) = (None, DEFAULT_TIMEOUT_S, DEFAULT_TTL_S);
    let (mut members, mut cmd) = (None, Vec::new());
    while let Some(word) = args.next_word()? {
        match split_option(&word) {
            ("--group", v) => group = Some(a_name(args.value(v, "--group")?, "--group")?),
            ("-t" | "--timeout", v) => timeout_s = seconds(&args.value(v, "-t")?, "-t")?,
            ("--ttl", v) => ttl_s = seconds(&args.value(v, "--ttl")?, "--ttl")?,
            ("--members", v) => {
                let list = args.value(v, "--members")?;
                let names = list
                    .split(',')
                    .map(|n| a_name(n.to_string(), "--members"))
                    .collect::<Result<Vec<_>, _>>()?;
                let twice = names
                    .iter()
                    .enumerate()
                    .find(|(i, n)| names[..*i].contains(n));
                if let Some((_, twice)) = twice {
                    return Err(format!("--members names {twice} twice"));
                }
                members = Some(names);
            }
            ("--", None) => {
                cmd = args.rest();
                if cmd.is_empty() {
                    return Err("freeze: no command after --".into());
                }
            }
            _ => return Err(format!("freeze: unexpected {word}")),
        }
    }
    Ok(Command::Freeze {
        group: group.ok_or("freeze: --group is required")?,
        timeout_s,
        ttl_s: lease_ttl(ttl_s)?,
        members,
        cmd,
    })
}

fn thaw(args: &mut Args) -> Result<Command, String> {
    let mut group = None;
    while let Some(word) = args.next_word()? {
        match split_option(&word) {
            ("--group", v) => group = Some(a_name(args.value(v, "--group")?, "--group")?),
            _ => return Err(format!("thaw: unexpected {word}")),
        }
    }
    Ok(Command::Thaw {
        group: group.ok_or("thaw: --group is required")?,
    })
}

fn status(args: &mut Args) -> Result<Command, String> {
    let (mut group, mut json) = (None, false);
    while let Some(word) = args.next_word()? {
        match split_option(&word) {
            ("--group", v) => group = Some(a_name(args.value(v, "--group")?, "--group")?),
            ("--json", None) => json = true,
            _ => return Err(format!("status: unexpected {word}")),
        }
    }
    Ok(Command::Status {
        group: group.ok_or("status: --group is required")?,
        json,
    })
}

/// `--opt=value` as (`--opt`, Some(value)); anything else whole.
fn split_option(word: &str) -> (&str, Option<String>) {
    match word.split_once('=') {
        Some((opt, value)) if opt.starts_with("--") => (opt, Some(value.to_string())),
        _ => (word, None),
    }
}

fn a_name(name: String, what: &str) -> Result<String, String> {
    if valid_name(&name) {
        Ok(name)
    } else {
        Err(format!(
            "{what}: {name:?} is not a name (1 to 64 letters, digits, '-', '_' or '.')"
        ))
    }
}

fn seconds(text: &str, what: &str) -> Result<u32, String> {
    match text.parse::<u32>() {
        Ok(n) if n > 0 && n <= 86_400 => Ok(n),
        _ => Err(format!(
            "{what}: {text:?} is not a number of seconds from 1 to 86400"
        )),
    }
}

/// etcd grants no lease shorter than about 2 s (1.5 election timeouts).
fn lease_ttl(ttl_s: u32) -> Result<u32, String> {
    if !(2..=3600).contains(&ttl_s) {
        return Err(format!("--ttl: {ttl_s} s: a lease lasts from 2 to 3600 s"));
    }
    Ok(ttl_s)
}

fn endpoint_list(text: &str) -> Result<Vec<String>, String> {
    let list: Vec<String> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .map(String::from)
        .collect();
    if list.is_empty() {
        return Err(format!("--endpoints: {text:?} names no endpoint"));
    }
    Ok(list)
}

/// The arguments, read one word at a time; only a command after `--` may be
/// other than UTF-8.
struct Args(std::vec::IntoIter<OsString>);

impl Args {
    fn new(args: Vec<OsString>) -> Args {
        Args(args.into_iter())
    }

    fn next_word(&mut self) -> Result<Option<String>, String> {
        self.0
            .next()
            .map(|w| w.into_string().map_err(|w| format!("{w:?} is not UTF-8")))
            .transpose()
    }

    /// The option's value: after its `=`, or the next word.
    fn value(&mut self, inline: Option<String>, what: &str) -> Result<String, String> {
        match inline {
            Some(v) => Ok(v),
            None => self.next_word()?.ok_or(format!("{what} needs a value")),
        }
    }

    fn rest(&mut self) -> Vec<OsString> {
        self.0.by_ref().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> Result<Cli, String> {
        parse(line.split_whitespace().map(OsString::from).collect(), None)
    }

    #[test]
    fn an_agent_takes_its_group_name_ttl_and_mounts() {
        let cli =
            parsed("--endpoints http://127.0.0.1:2379 agent --group g --name n1 --ttl=3 /a /b")
                .unwrap();
        assert_eq!(cli.etcd.endpoints, ["http://127.0.0.1:2379"]);
        assert_eq!(
            cli.command,
            Command::Agent {
                group: "g".into(),
                name: "n1".into(),
                ttl_s: 3,
                mounts: vec!["/a".into(), "/b".into()],
            }
        );
    }

    #[test]
    fn a_freeze_takes_its_members_timeout_and_command() {
        let cli =
            parsed("--endpoints e1,e2 freeze --group g -t 30 --members a,b -- cp x y").unwrap();
        assert_eq!(cli.etcd.endpoints, ["e1", "e2"]);
        let Command::Freeze {
            timeout_s,
            ttl_s,
            members,
            cmd,
            ..
        } = cli.command
        else {
            panic!("{:?}", cli.command)
        };
        assert_eq!((timeout_s, ttl_s), (30, DEFAULT_TTL_S));
        assert_eq!(members, Some(vec!["a".into(), "b".into()]));
        assert_eq!(cmd, ["cp", "x", "y"]);
    }

    #[test]
    fn endpoints_come_from_the_environment_when_not_given() {
        let args = ["thaw", "--group", "g"].map(OsString::from).to_vec();
        let cli = parse(args, Some("http://[::1]:2379".into())).unwrap();
        assert_eq!(cli.etcd.endpoints, ["http://[::1]:2379"]);
        assert!(
            parsed("thaw --group g")
                .unwrap_err()
                .contains(ENDPOINTS_ENV)
        );
    }

    #[test]
    fn a_user_may_carry_its_password() {
        let cli = parsed("--endpoints e --user root:secret status --group g --json").unwrap();
        assert_eq!(cli.etcd.user.as_deref(), Some("root"));
        assert_eq!(cli.etcd.password.as_deref(), Some("secret"));
        assert_eq!(
            cli.command,
            Command::Status {
                group: "g".into(),
                json: true
            }
        );
    }

    #[test]
    fn mistakes_are_refused_with_what_was_wrong() {
        for (line, says) in [
            ("--endpoints e", "no command"),
            ("--endpoints e agent --group g --name n", "no mount point"),
            ("--endpoints e agent --name n /a", "--group is required"),
            (
                "--endpoints e agent --group g/h --name n /a",
                "is not a name",
            ),
            (
                "--endpoints e agent --group g --name n --ttl 1 /a",
                "from 2 to 3600",
            ),
            ("--endpoints e freeze --group g -t 0", "from 1 to 86400"),
            ("--endpoints e freeze --group g -t -1", "from 1 to 86400"),
            (
                "--endpoints e freeze --group g --members a,,b",
                "is not a name",
            ),
            (
                "--endpoints e freeze --group g --members a,b,a",
                "names a twice",
            ),
            ("--endpoints e freeze --group g --", "no command after --"),
            ("--endpoints e freeze --group g extra", "unexpected extra"),
            ("--endpoints e --cert c thaw --group g", "go together"),
            ("--endpoints e --bogus thaw --group g", "unknown option"),
            ("--endpoints e melt --group g", "unknown command"),
            ("--endpoints , thaw --group g", "names no endpoint"),
            ("--endpoints", "needs a value"),
        ] {
            let err = parsed(line).unwrap_err();
            assert!(err.contains(says), "{line}: {err}");
        }
    }

    #[test]
    fn help_is_asked_anywhere_before_the_commands_own_arguments() {
        let words = |line: &str| -> Vec<OsString> { line.split(' ').map(OsString::from).collect() };
        assert!(asks_for_help(&words("--help")));
        assert!(asks_for_help(&words("agent -h")));
        assert!(!asks_for_help(&words("freeze --group g -- tar --help")));
    }
}
