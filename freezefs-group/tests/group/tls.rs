//! etcd over TLS, as production runs it: the server's certificate checked
//! against `--cacert`, and the client's own (`--cert`, `--key`) shown to an
//! etcd that asks for one (`--client-cert-auth`).

use std::time::Duration;

use crate::certificates::Certificates;
use crate::etcd_cluster::Etcd;
use crate::harness::{Host, exited_saying, group_cmd_as, group_exe};
use crate::support::Kind;

/// `--cacert CA --cert CERT --key KEY`, each one given or not.
fn tls_args(certs: &Certificates, ca: bool, identity: bool) -> Vec<String> {
    let mut args = Vec::new();
    let mut add = |option: &str, path: &std::path::Path| {
        args.push(option.to_string());
        args.push(path.to_str().unwrap().to_string());
    };
    if ca {
        add("--cacert", &certs.ca);
    }
    if identity {
        add("--cert", &certs.client_cert);
        add("--key", &certs.client_key);
    }
    args
}

fn host_over_tls(etcd: &Etcd, group: &str) -> Host {
    let args = tls_args(etcd.certificates(), true, true);
    let mut host = Host::unstarted(etcd, group, "a", Kind::Ext4, 3);
    host.use_etcd_args(&args.iter().map(String::as_str).collect::<Vec<_>>());
    host.start_agent(etcd);
    host
}

fn freeze_with(etcd: &Etcd, args: &[String], group: &str) -> std::process::Output {
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    group_cmd_as(
        etcd,
        &args,
        &[],
        &["freeze", "--group", group, "-t", "30", "--", "true"],
    )
}

#[test]
fn over_tls_with_a_client_certificate_an_agent_serves_and_the_group_freezes() {
    let etcd = Etcd::start_tls();
    assert!(etcd.endpoints().starts_with("https://"));
    let a = host_over_tls(&etcd, "tls");
    let out = freeze_with(&etcd, &tls_args(etcd.certificates(), true, true), "tls");
    exited_saying(&out, 0, "a: held throughout");
    assert!(a.fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn over_tls_a_client_that_cannot_check_the_server_or_shows_no_certificate_is_refused() {
    let etcd = Etcd::start_tls();
    let a = host_over_tls(&etcd, "tls");
    for (ca, identity, says) in [
        (false, true, "no --cacert was given"),
        (true, false, "give --cert and --key"),
        (false, false, "no --cacert was given"),
    ] {
        let out = freeze_with(&etcd, &tls_args(etcd.certificates(), ca, identity), "tls");
        exited_saying(&out, 1, says);
        assert!(
            a.fs.write_completes_within(Duration::from_secs(2)),
            "--cacert {ca}, --cert and --key {identity}: the agent's mount froze"
        );
    }
}

#[test]
fn a_certificate_or_password_file_that_cannot_be_read_is_named() {
    let missing = "/nonexistent-freezefs-test/file.pem";
    for (args, says) in [
        (vec!["--cacert", missing], format!("--cacert {missing}: ")),
        (
            vec!["--cert", missing, "--key", missing],
            format!("--cert {missing}: "),
        ),
        (
            vec!["--user", "u", "--password-file", missing],
            format!("--password-file {missing}: "),
        ),
    ] {
        let out = std::process::Command::new(group_exe())
            .args(["--endpoints", "https://127.0.0.1:9"])
            .args(&args)
            .args(["status", "--group", "g"])
            .output()
            .unwrap();
        exited_saying(&out, 1, &says);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("No such file or directory"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
