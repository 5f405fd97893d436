//! What the group tests stand on: agents as separate processes, each with
//! its own scratch filesystem and state directory, standing for hosts, and
//! the commands run against the test's own etcd.

use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::etcd_cluster::Etcd;
use crate::support::{Kind, Scratch, Syslog, holder_exe, wait_until};

pub(crate) fn group_exe() -> &'static str {
    env!("CARGO_BIN_EXE_freezefs-group")
}

/// An agent process and the host it stands for: its scratch filesystem,
/// state directory and syslog.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) fs: Scratch,
    pub(crate) syslog: Syslog,
    agent: Option<Child>,
    endpoints: String,
    /// etcd options the agent is given before its command (--user ...).
    etcd_args: Vec<String>,
    /// More environment for the agent (a wall clock of its own).
    env: Vec<(String, String)>,
    /// Agents started under libfaketime: each made a shared memory object
    /// and a semaphore named after its pid, which only a clean exit removes.
    faked_pids: Vec<u32>,
    group: String,
    ttl_s: u32,
}

impl Host {
    /// A host named `name` with a scratch filesystem of `kind`, its agent
    /// registered in `group` before this returns.
    pub(crate) fn start(etcd: &Etcd, group: &str, name: &str, kind: Kind, ttl_s: u32) -> Host {
        let mut host = Host::unstarted(etcd, group, name, kind, ttl_s);
        host.start_agent(etcd);
        host
    }

    /// The host, its agent not started yet.
    pub(crate) fn unstarted(etcd: &Etcd, group: &str, name: &str, kind: Kind, ttl_s: u32) -> Host {
        let fs = Scratch::new(kind);
        std::fs::create_dir_all(fs.state_dir()).unwrap();
        let syslog = Syslog::new(&fs.dir);
        Host {
            name: name.to_string(),
            fs,
            syslog,
            agent: None,
            endpoints: etcd.endpoints(),
            etcd_args: Vec::new(),
            env: Vec::new(),
            faked_pids: Vec::new(),
            group: group.to_string(),
            ttl_s,
        }
    }

    /// Gives the agent these etcd options from now on.
    pub(crate) fn use_etcd_args(&mut self, etcd_args: &[&str]) {
        self.etcd_args = etcd_args.iter().map(|a| a.to_string()).collect();
    }

    /// Gives the agent a wall clock `offset` from the machine's (libfaketime,
    /// its monotonic clock left alone, as on a host whose clock is off).
    pub(crate) fn use_clock_offset(&mut self, offset: &str) {
        self.env = vec![
            ("LD_PRELOAD".into(), libfaketime()),
            ("FAKETIME".into(), offset.into()),
            ("FAKETIME_DONT_FAKE_MONOTONIC".into(), "1".into()),
            ("FAKETIME_NO_CACHE".into(), "1".into()),
        ];
    }

    /// Reaches etcd through `endpoints` from now on.
    pub(crate) fn use_endpoints(&mut self, endpoints: &str) {
        self.endpoints = endpoints.to_string();
    }

    /// Starts (again) this host's agent, serving its scratch mount, and
    /// waits until it is registered.
    pub(crate) fn start_agent(&mut self, etcd: &Etcd) {
        self.spawn_agent();
        let key = format!("/freezefs/group/{}/member/{}", self.group, self.name);
        let registered = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            let out = etcd.etcdctl(&["get", &key, "--print-value-only"]);
            String::from_utf8_lossy(&out.stdout).contains(&format!("\"pid\":{}", self.pid()))
        });
        assert!(
            registered,
            "agent {} did not register: {}",
            self.name,
            self.agent_log()
        );
    }

    /// Starts the agent and returns at once.
    pub(crate) fn spawn_agent(&mut self) {
        let log = std::fs::File::create(self.fs.dir.join("agent.log")).unwrap();
        let child = Command::new(group_exe())
            .args(["--endpoints", &self.endpoints])
            .args(&self.etcd_args)
            .args(["agent", "--group", &self.group, "--name", &self.name])
            .args(["--ttl", &self.ttl_s.to_string()])
            .arg(&self.fs.mnt)
            .env("FREEZEFS_RUNDIR", self.fs.state_dir())
            .env("FREEZEFS_SYSCONFIGTAB", self.fs.sysconfigtab())
            .env("FREEZEFS_HOLDER", holder_exe())
            .env("FREEZEFS_HOOKS_DIR", self.fs.dir.join("hooks.d"))
            .env("FREEZEFS_HOLD_DIR", self.fs.dir.join("hold.d"))
            .env("FREEZEFS_SYSLOG_SOCKET", &self.syslog.path)
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start the agent");
        if !self.env.is_empty() {
            self.faked_pids.push(child.id());
        }
        self.agent = Some(child);
    }

    pub(crate) fn pid(&self) -> u32 {
        self.agent.as_ref().map_or(0, Child::id)
    }

    pub(crate) fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(self.pid() as i32).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits for the agent to exit; its exit code.
    pub(crate) fn agent_exit(&mut self, limit: Duration) -> Option<i32> {
        let child = self.agent.as_mut()?;
        let end = Instant::now() + limit;
        while Instant::now() < end {
            if let Some(status) = child.try_wait().unwrap() {
                self.agent = None;
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub(crate) fn agent_log(&self) -> String {
        std::fs::read_to_string(self.fs.dir.join("agent.log")).unwrap_or_default()
    }

    /// A freeze hook that fails, in this host's hook directory.
    pub(crate) fn failing_freeze_hook(&self) {
        self.freeze_hook("echo refusing >&2; exit 1");
    }

    /// A hold hook `name` in this host's hold hook directory: ready at
    /// once, it logs `NAME told LINE` to `hold.log` when told the freeze
    /// ended; `meanwhile` runs in the background while it holds.
    pub(crate) fn hold_hook(&self, name: &str, meanwhile: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.fs.dir.join("hold.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = dir.join(name);
        std::fs::write(
            &hook,
            format!(
                "#!/bin/bash
( {meanwhile} ) &
echo ready >&3
exec 3>&-
read -r line && echo \"{name} told $line\" >> {}
",
                self.fs.dir.join("hold.log").display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// What this host's hold hooks were told.
    pub(crate) fn hold_log(&self) -> String {
        std::fs::read_to_string(self.fs.dir.join("hold.log")).unwrap_or_default()
    }

    /// A freeze hook (run as `HOOK freeze MOUNT`) doing `body`, in this
    /// host's hook directory; its thaw succeeds.
    pub(crate) fn freeze_hook(&self, body: &str) {
        use std::os::unix::fs::PermissionsExt;
        let dir = self.fs.dir.join("hooks.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let hook = dir.join("10-hook");
        std::fs::write(
            &hook,
            format!("#!/bin/sh\n[ \"$1\" = freeze ] && {{ {body}; }}\nexit 0\n"),
        )
        .unwrap();
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if let Some(mut child) = self.agent.take() {
            if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::CONT);
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        for pid in &self.faked_pids {
            let _ = std::fs::remove_file(format!("/dev/shm/faketime_shm_{pid}"));
            let _ = std::fs::remove_file(format!("/dev/shm/sem.faketime_sem_{pid}"));
        }
        // The scratch thaws and unmounts itself on drop.
    }
}

/// Debian's libfaketime, under the machine's multiarch directory.
fn libfaketime() -> String {
    std::fs::read_dir("/usr/lib")
        .unwrap()
        .filter_map(|e| Some(e.ok()?.path().join("faketime/libfaketime.so.1")))
        .find(|p| p.exists())
        .expect("libfaketime (Debian's faketime, installed by scripts/install-deps)")
        .display()
        .to_string()
}

/// Runs `freezefs-group ARGS` to the end.
pub(crate) fn group_cmd(etcd: &Etcd, args: &[&str]) -> Output {
    group_cmd_as(etcd, &[], &[], args)
}

/// Runs `freezefs-group ETCD_ARGS ARGS` to the end, with `env`.
pub(crate) fn group_cmd_as(
    etcd: &Etcd,
    etcd_args: &[&str],
    env: &[(&str, &str)],
    args: &[&str],
) -> Output {
    Command::new(group_exe())
        .args(["--endpoints", &etcd.endpoints()])
        .args(etcd_args)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("freezefs-group")
}

/// Starts `freezefs-group ARGS` in a process group of its own.
pub(crate) fn group_spawn(etcd: &Etcd, args: &[&str]) -> Child {
    use std::os::unix::process::CommandExt;
    Command::new(group_exe())
        .args(["--endpoints", &etcd.endpoints()])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("freezefs-group")
}

pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}stderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The command exited `code`, and its stderr says `says`.
pub(crate) fn exited_saying(out: &Output, code: i32, says: &str) {
    assert_eq!(out.status.code(), Some(code), "{}", text(out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(says),
        "no {says:?}: {}",
        text(out)
    );
}

/// The group's status as JSON.
pub(crate) fn status_json(etcd: &Etcd, group: &str) -> serde_json::Value {
    let out = group_cmd(etcd, &["status", "--group", group, "--json"]);
    assert!(out.status.success(), "{}", text(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The members' states by name, from `status --json`.
pub(crate) fn states(etcd: &Etcd, group: &str) -> Vec<(String, String)> {
    status_json(etcd, group)["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_string(),
                m["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// Waits until every given host's filesystem takes writes again; how long
/// the last one took, counted from `since`.
pub(crate) fn all_thawed_within(
    hosts: &[&Host],
    since: Instant,
    limit: Duration,
) -> Result<Duration, String> {
    let writers: Vec<_> = hosts
        .iter()
        .map(|h| (h.name.clone(), h.fs.write_in_background()))
        .collect();
    let mut last = Duration::ZERO;
    for (name, writer) in writers {
        let left = limit.saturating_sub(since.elapsed());
        match writer.recv_timeout(left) {
            Ok(done) => last = last.max(done.duration_since(since)),
            Err(_) => return Err(format!("{name} still frozen {:?} after", limit)),
        }
    }
    Ok(last)
}
