//! A real etcd of the test's own: one member, or three, on loopback ports,
//! its data in a temporary directory, stopped by its pid.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use crate::certificates::Certificates;
use crate::support::{mkdtemp, wait_until};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One etcd server process.
struct Server {
    name: String,
    client_url: String,
    child: Option<Child>,
}

/// An etcd cluster of the test's own.
pub(crate) struct Etcd {
    dir: PathBuf,
    servers: Vec<Server>,
    /// `root:PASSWORD` once auth is enabled.
    root: Option<String>,
    /// Set when clients must speak TLS and show a certificate.
    tls: Option<Certificates>,
}

impl Etcd {
    pub(crate) fn start() -> Etcd {
        Etcd::cluster(1)
    }

    /// `size` members on loopback ports, healthy before this returns.
    pub(crate) fn cluster(size: usize) -> Etcd {
        Etcd::launch(size, false, None)
    }

    /// One member whose backend holds at most `bytes`: past that it raises
    /// its NOSPACE alarm and takes only reads and deletes.
    pub(crate) fn with_quota(bytes: u64) -> Etcd {
        Etcd::launch(1, false, Some(bytes))
    }

    /// One member that speaks only TLS to clients and asks each for a
    /// certificate signed by its CA (`--client-cert-auth`).
    pub(crate) fn start_tls() -> Etcd {
        Etcd::launch(1, true, None)
    }

    /// The CA and certificates of an etcd started with [`Etcd::start_tls`].
    pub(crate) fn certificates(&self) -> &Certificates {
        self.tls.as_ref().expect("an etcd started with TLS")
    }

    fn launch(size: usize, tls: bool, quota: Option<u64>) -> Etcd {
        assert!(
            Path::new("/usr/bin/etcd").exists() || which("etcd"),
            "no etcd: scripts/install-deps tests installs Debian's etcd-server; the group tests do not skip"
        );
        let dir = mkdtemp("freezefs-group-etcd");
        let tls = tls.then(|| Certificates::make(&dir));
        let scheme = if tls.is_some() { "https" } else { "http" };
        let peers: Vec<(String, String, String)> = (0..size)
            .map(|i| {
                (
                    format!("e{i}"),
                    format!("{scheme}://127.0.0.1:{}", free_port()),
                    format!("http://127.0.0.1:{}", free_port()),
                )
            })
            .collect();
        let initial: Vec<String> = peers.iter().map(|(n, _, p)| format!("{n}={p}")).collect();
        let mut servers = Vec::new();
        for (name, client_url, peer_url) in &peers {
            let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
            let mut etcd = Command::new("etcd");
            if let Some(certs) = &tls {
                etcd.arg("--cert-file")
                    .arg(&certs.server_cert)
                    .arg("--key-file")
                    .arg(&certs.server_key)
                    .arg("--trusted-ca-file")
                    .arg(&certs.ca)
                    .arg("--client-cert-auth");
            }
            if let Some(bytes) = quota {
                etcd.arg(format!("--quota-backend-bytes={bytes}"));
            }
            let child = etcd
                .args(["--name", name])
                .arg("--data-dir")
                .arg(dir.join(name))
                .args([
                    "--listen-client-urls",
                    client_url,
                    "--advertise-client-urls",
                    client_url,
                ])
                .args([
                    "--listen-peer-urls",
                    peer_url,
                    "--initial-advertise-peer-urls",
                    peer_url,
                ])
                .args(["--initial-cluster", &initial.join(",")])
                .args(["--initial-cluster-state", "new", "--log-level", "warn"])
                .stdout(log.try_clone().unwrap())
                .stderr(log)
                .spawn()
                .expect("start etcd");
            servers.push(Server {
                name: name.clone(),
                client_url: client_url.clone(),
                child: Some(child),
            });
        }
        let etcd = Etcd {
            dir,
            servers,
            root: None,
            tls,
        };
        let healthy = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
            etcd.etcdctl(&["endpoint", "health"]).status.success()
        });
        assert!(healthy, "etcd did not become healthy: {}", etcd.logs());
        etcd
    }

    /// Every client URL, comma-separated, as `--endpoints` takes them.
    pub(crate) fn endpoints(&self) -> String {
        self.servers
            .iter()
            .map(|s| s.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    pub(crate) fn etcdctl(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new("etcdctl");
        if let Some(root) = &self.root {
            cmd.env("ETCDCTL_USER", root);
        }
        if let Some(certs) = &self.tls {
            cmd.arg("--cacert")
                .arg(&certs.ca)
                .arg("--cert")
                .arg(&certs.client_cert)
                .arg("--key")
                .arg(&certs.client_key);
        }
        cmd.env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", self.live_endpoints()))
            .args(["--dial-timeout=1s", "--command-timeout=2s"])
            .args(args)
            .output()
            .expect("etcdctl")
    }

    /// Adds a root user and turns authentication on: from then on every
    /// client needs a user.
    pub(crate) fn enable_auth(&mut self) {
        for args in [
            &["user", "add", "root:root-secret", "--interactive=false"][..],
            &["user", "grant-role", "root", "root"],
            &["auth", "enable"],
        ] {
            let out = self.etcdctl(args);
            assert!(out.status.success(), "etcdctl {args:?}: {out:?}");
        }
        self.root = Some("root:root-secret".into());
    }

    /// Runs a script with etcdctl's settings for the administrator.
    pub(crate) fn as_admin(&self, script: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(script);
        cmd.args(args)
            .env("ETCDCTL_ENDPOINTS", self.live_endpoints());
        if let Some(root) = &self.root {
            cmd.env("ETCDCTL_USER", root);
        }
        cmd.envs(env.iter().copied())
            .output()
            .expect("run the script")
    }

    fn live_endpoints(&self) -> String {
        self.servers
            .iter()
            .filter(|s| s.child.is_some())
            .map(|s| s.client_url.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops every member: SIGKILL, as a crash or a lost network would.
    pub(crate) fn stop(&mut self) {
        for server in &mut self.servers {
            if let Some(mut child) = server.child.take() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
    }

    /// Stops (SIGSTOP) or continues (SIGCONT) every member: an etcd that
    /// hangs, and comes back.
    pub(crate) fn hang(&self, hung: bool) {
        let signal = if hung {
            rustix::process::Signal::STOP
        } else {
            rustix::process::Signal::CONT
        };
        for child in self.servers.iter().filter_map(|s| s.child.as_ref()) {
            let pid = rustix::process::Pid::from_raw(child.id() as i32).unwrap();
            rustix::process::kill_process(pid, signal).unwrap();
        }
    }

    /// Puts 120 kB values (an argument's limit is 128 KiB) until etcd
    /// raises its NOSPACE alarm.
    pub(crate) fn fill_until_full(&self) {
        let value = "x".repeat(120_000);
        for i in 0..400 {
            let out = self.etcdctl(&["put", &format!("/filler/{i}"), &value]);
            if String::from_utf8_lossy(&out.stderr).contains("database space exceeded") {
                return;
            }
            assert!(out.status.success(), "etcdctl put: {out:?}");
        }
        panic!("etcd never filled up");
    }

    /// The current revision, from `etcdctl get / -w json`.
    pub(crate) fn revision(&self) -> i64 {
        let out = self.etcdctl(&["get", "/", "-w", "json"]);
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        doc["header"]["revision"].as_i64().unwrap()
    }

    /// Compacts every revision before the current one.
    pub(crate) fn compact(&self) {
        for i in 0..3 {
            let out = self.etcdctl(&["put", "/compaction-filler", &i.to_string()]);
            assert!(out.status.success(), "{out:?}");
        }
        let revision = self.revision().to_string();
        let out = self.etcdctl(&["compact", &revision]);
        assert!(out.status.success(), "etcdctl compact: {out:?}");
    }

    /// Kills the current leader; its name.
    pub(crate) fn kill_leader(&mut self) -> String {
        let leader = self.leader().expect("a leader");
        let server = self.servers.iter_mut().find(|s| s.name == leader).unwrap();
        let mut child = server.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        leader
    }

    /// The leader's name, from `etcdctl endpoint status`.
    pub(crate) fn leader(&self) -> Option<String> {
        for server in self.servers.iter().filter(|s| s.child.is_some()) {
            let out = Command::new("etcdctl")
                .arg(format!("--endpoints={}", server.client_url))
                .args(["endpoint", "status", "-w", "fields"])
                .output()
                .ok()?;
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |name: &str| {
                text.lines()
                    .find(|l| l.starts_with(&format!("\"{name}\"")))
                    .and_then(|l| l.split(':').nth(1))
                    .map(|v| v.trim().to_string())
            };
            if field("MemberID").is_some() && field("MemberID") == field("Leader") {
                return Some(server.name.clone());
            }
        }
        None
    }

    pub(crate) fn logs(&self) -> String {
        self.servers
            .iter()
            .map(|s| {
                std::fs::read_to_string(self.dir.join(format!("{}.log", s.name)))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn which(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
