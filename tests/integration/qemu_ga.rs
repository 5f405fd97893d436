//! Debian's qemu-guest-agent under the shim, driven over its socket as a
//! hypervisor drives it (`-m unix-listen`). It runs in a mount namespace of
//! the test's own from which every mount the test did not make is detached:
//! its thaw issues FITHAW on every block filesystem it sees, and would thaw
//! other tests' freezes. Only `guest-fsfreeze-freeze-list` with the test's
//! own mounts is ever sent, never the plain `guest-fsfreeze-freeze`, and the
//! machine's own `/` is never in a list (`/var` and `/usr` are scratch images
//! mounted over them in the namespace). The root mount is the one mount a
//! namespace cannot detach: the agent's thaw reaches it through the shim as
//! a freezefs thaw, which finds it not frozen (EINVAL) and touches nothing
//! (were it ever frozen, that thaw would be the suite's guard's rescue).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::private_mounts::PrivateMounts;
use rustix::process::{Pid, Signal, kill_process};

use crate::support::{
    Kind, Scratch, Syslog, crate_dir, event, mkdtemp, run, shim, wait_until, with_env,
    write_sysconfigtab,
};

/// A qemu-ga process under the shim in a namespace, with its socket.
struct GuestAgent {
    child: Child,
    dir: PathBuf,
    socket: PathBuf,
}

impl GuestAgent {
    /// Starts qemu-ga under the shim, using `state`'s state directory,
    /// sysconfigtab and holder, with `FREEZEFS_TIMEOUT` set when given.
    fn start(ns: &PrivateMounts, state: &Scratch, timeout: Option<&str>) -> GuestAgent {
        GuestAgent::start_with(ns, state, timeout, &[])
    }

    /// [`GuestAgent::start`] with more of the environment set.
    fn start_with(
        ns: &PrivateMounts,
        state: &Scratch,
        timeout: Option<&str>,
        env: &[(&str, &OsStr)],
    ) -> GuestAgent {
        let dir = mkdtemp("freezefs-test-qemu-ga");
        let socket = dir.join("qga.sock");
        let child = ns
            .under_shim(state, "qemu-ga", timeout)
            .envs(env.iter().copied())
            .args(["-m", "unix-listen", "-p"])
            .arg(&socket)
            .arg("-t")
            .arg(&dir)
            .arg("-f")
            .arg(dir.join("qemu-ga.pid"))
            .arg("-l")
            .arg(dir.join("qemu-ga.log"))
            .stdin(Stdio::null())
            .spawn()
            .expect("qemu-ga (scripts/install-deps installs qemu-guest-agent)");
        let agent = GuestAgent { child, dir, socket };
        assert!(
            wait_until(Duration::from_secs(10), Duration::from_millis(10), || {
                UnixStream::connect(&agent.socket).is_ok()
            }),
            "qemu-ga did not listen: {}",
            agent.log()
        );
        agent
    }

    /// One command and its one-line answer.
    fn call(&self, command: &str) -> String {
        let mut stream = UnixStream::connect(&self.socket).expect("connect to qemu-ga");
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        stream.write_all(command.as_bytes()).unwrap();
        stream.write_all(b"\n").unwrap();
        let mut answer = String::new();
        BufReader::new(stream)
            .read_line(&mut answer)
            .expect("qemu-ga answered nothing");
        // The session, for `--nocapture`.
        eprintln!("-> {command}\n<- {}", answer.trim());
        answer.trim().to_string()
    }

    /// `guest-fsfreeze-freeze-list` of these mount points (never the
    /// plain `guest-fsfreeze-freeze`, which would freeze everything).
    fn freeze_list(&self, mount_points: &[&Path]) -> String {
        let list: Vec<String> = mount_points
            .iter()
            .map(|p| format!("\"{}\"", p.display()))
            .collect();
        assert!(
            !mount_points.contains(&Path::new("/")),
            "never put / in a list"
        );
        self.call(&format!(
            "{{\"execute\":\"guest-fsfreeze-freeze-list\",\"arguments\":{{\"mountpoints\":[{}]}}}}",
            list.join(",")
        ))
    }

    fn status(&self) -> String {
        self.call("{\"execute\":\"guest-fsfreeze-status\"}")
    }

    fn thaw(&self) -> String {
        self.call("{\"execute\":\"guest-fsfreeze-thaw\"}")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu-ga.log")).unwrap_or_default()
    }

    fn signal(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32) {
            let _ = kill_process(pid, signal);
        }
    }
}

impl Drop for GuestAgent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn returned(answer: &str, value: &str) -> bool {
    answer == format!("{{\"return\": {value}}}")
}

/// Waits for the holder to thaw `fs` at its deadline; how long after
/// `deadline` that happened.
fn thawed_after(fs: &Scratch, deadline: Instant) -> Duration {
    assert!(
        wait_until(Duration::from_secs(15), Duration::from_millis(2), || !fs
            .kernel_frozen()),
        "still frozen long after its deadline"
    );
    let late = Instant::now().saturating_duration_since(deadline);
    eprintln!("{} thawed {late:?} after its deadline", fs.mnt.display());
    late
}

#[test]
fn freeze_list_status_and_thaw_count_only_freezable_filesystems() {
    let ext4 = Scratch::new(Kind::Ext4);
    let xfs = Scratch::new(Kind::Xfs);
    let tmpfs = Scratch::new(Kind::Tmpfs);
    let ns = PrivateMounts::new(&[&ext4, &xfs, &tmpfs]);
    let agent = GuestAgent::start(&ns, &ext4, Some("30"));

    let answer = agent.freeze_list(&[&ext4.mnt, &xfs.mnt, &tmpfs.mnt]);
    assert!(returned(&answer, "2"), "{answer}\n{}", agent.log());
    assert!(returned(&agent.status(), "\"frozen\""));
    assert!(ext4.kernel_frozen() && xfs.kernel_frozen());
    assert!(!ext4.write_completes_within(Duration::from_millis(200)));
    let answer = agent.thaw();
    assert!(returned(&answer, "2"), "{answer}");
    assert!(returned(&agent.status(), "\"thawed\""));
    assert!(!ext4.kernel_frozen() && !xfs.kernel_frozen());
    assert!(ext4.write_completes_within(Duration::from_secs(5)));
}

#[test]
fn a_host_that_never_thaws_gets_the_deadline_and_a_lower_count() {
    let ext4 = Scratch::new(Kind::Ext4);
    let btrfs = Scratch::new(Kind::Btrfs);
    let ns = PrivateMounts::new(&[&ext4, &btrfs]);
    let agent = GuestAgent::start(&ns, &ext4, Some("1"));

    let answer = agent.freeze_list(&[&ext4.mnt, &btrfs.mnt]);
    let deadline = Instant::now() + Duration::from_secs(1);
    assert!(returned(&answer, "2"), "{answer}\n{}", agent.log());
    thawed_after(&ext4, deadline);
    thawed_after(&btrfs, deadline);
    // The host's late thaw tells it the snapshot was not quiesced to the end.
    assert!(returned(&agent.thaw(), "0"));
}

#[test]
fn a_guest_agent_killed_while_frozen_leaves_no_freeze_behind() {
    for signal in [Signal::KILL, Signal::TERM] {
        let fs = Scratch::new(Kind::Ext4);
        let ns = PrivateMounts::new(&[&fs]);
        let agent = GuestAgent::start(&ns, &fs, Some("2"));
        let answer = agent.freeze_list(&[&fs.mnt]);
        let deadline = Instant::now() + Duration::from_secs(2);
        assert!(returned(&answer, "1"), "{answer}");
        agent.signal(signal);
        let late = thawed_after(&fs, deadline);
        assert!(late < Duration::from_secs(2), "{signal:?}: {late:?} late");
    }
}

#[test]
fn var_and_usr_are_frozen_and_thawed_by_the_cap_when_the_host_asks_for_no_timeout() {
    let var = Scratch::new(Kind::Ext4);
    let usr = Scratch::new(Kind::Xfs);
    let state = Scratch::new(Kind::Ext4);
    std::fs::write(
        state.sysconfigtab(),
        "vfs:\n\tfreezefs_protected_max_timeout = 2\n",
    )
    .unwrap();
    let ns = PrivateMounts::new(&[&var, &usr, &state]);
    let agent = GuestAgent::start(&ns, &state, Some("-1"));
    ns.mount_over(&var, "/var");
    ns.mount_over(&usr, "/usr");
    assert!(ns.names("/var", &var) && ns.names("/usr", &usr));

    let answer = agent.freeze_list(&[Path::new("/var"), Path::new("/usr")]);
    let deadline = Instant::now() + Duration::from_secs(2);
    assert!(returned(&answer, "2"), "{answer}\n{}", agent.log());
    assert!(var.kernel_frozen() && usr.kernel_frozen());
    let mut list = ns.command(crate::support::freezefs_exe());
    list.arg("-l");
    let listed = run(&mut with_env(&mut list, &state));
    eprintln!("$ freezefs -l\n{listed}");
    assert!(
        listed.contains("/var") && listed.contains("/usr"),
        "{listed}"
    );
    thawed_after(&var, deadline);
    thawed_after(&usr, deadline);
    assert!(returned(&agent.thaw(), "0"));
}

#[test]
fn a_list_holding_the_state_directorys_filesystem_fails_and_freezes_nothing() {
    // Mounted first, so frozen last: the other is frozen, then rolled back.
    let holds_state = Scratch::new(Kind::Xfs);
    let fs = Scratch::new(Kind::Ext4);
    write_sysconfigtab(&fs.sysconfigtab(), "30");
    let log = Syslog::new(&fs.dir);
    let ns = PrivateMounts::new(&[&holds_state, &fs]);
    let state_dir = holds_state.mnt.join("run");
    let agent = GuestAgent::start_with(
        &ns,
        &fs,
        None,
        &[
            ("FREEZEFS_RUNDIR", state_dir.as_os_str()),
            ("FREEZEFS_SYSLOG_SOCKET", log.path.as_os_str()),
        ],
    );

    let answer = agent.freeze_list(&[&fs.mnt, &holds_state.mnt]);
    assert!(answer.contains("\"error\""), "{answer}");
    assert!(answer.contains("Resource deadlock avoided"), "{answer}");
    assert!(!fs.kernel_frozen() && !holds_state.kernel_frozen());
    assert!(returned(&agent.status(), "\"thawed\""));
    let events = log.drain();
    event(&events, "freezefs.frozen");
    event(&events, "freezefs.thawed");
}

#[test]
fn the_systemd_drop_in_puts_the_agent_under_the_shim_with_its_deadline() {
    let drop_in =
        std::fs::read_to_string(crate_dir().join("examples/qemu-guest-agent.conf")).unwrap();
    let env: Vec<(String, String)> = drop_in
        .lines()
        .filter_map(|line| line.strip_prefix("Environment="))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let value = |name: &str| {
        env.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("the drop-in sets no {name}"))
    };
    assert!(value("LD_PRELOAD").ends_with("/libfreezefs_preload.so"));
    let timeout = value("FREEZEFS_TIMEOUT");
    assert!(timeout.parse::<u32>().is_ok_and(|t| t > 0), "{timeout}");

    let fs = Scratch::new(Kind::Ext4);
    let ns = PrivateMounts::new(&[&fs]);
    // This build's shim where the drop-in names the installed one.
    let built = shim();
    let agent = GuestAgent::start_with(
        &ns,
        &fs,
        None,
        &[
            ("LD_PRELOAD", built.as_os_str()),
            ("FREEZEFS_TIMEOUT", OsStr::new(&timeout)),
        ],
    );
    assert!(returned(&agent.freeze_list(&[&fs.mnt]), "1"));
    let record = fs
        .record_text()
        .expect("the agent's freeze has no freezefs record");
    assert!(
        record.contains(&format!("\ntimeout_s {timeout}\n")),
        "{record}"
    );
    assert!(returned(&agent.thaw(), "1"));
    assert!(!fs.kernel_frozen());
}
