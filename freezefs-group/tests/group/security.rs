//! Who may freeze: etcd's own users and roles, passed through, and the
//! project's RBAC example (examples/etcd-rbac.sh) confining a user to one
//! group's keys; and how the agent's unit installs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::etcd_cluster::Etcd;
use crate::harness::{Host, exited_saying, group_cmd, group_cmd_as, group_exe, text};
use crate::support::{Kind, mkdtemp, run};

fn example(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// An etcd with auth on, and `orders-agent` confined to group `orders`
/// by the example script.
fn etcd_with_a_group_user() -> Etcd {
    let mut etcd = Etcd::start();
    etcd.enable_auth();
    let out = etcd.as_admin(
        &example("etcd-rbac.sh"),
        &["orders", "orders-agent"],
        &[("USER_PASSWORD", "agent-secret")],
    );
    assert!(out.status.success(), "{}", text(&out));
    etcd
}

#[test]
fn a_user_confined_to_its_groups_keys_freezes_that_group() {
    let etcd = etcd_with_a_group_user();
    let mut a = Host::unstarted(&etcd, "orders", "a", Kind::Ext4, 3);
    let password = a.fs.dir.join("password");
    std::fs::write(&password, "agent-secret\n").unwrap();
    let as_agent = [
        "--user",
        "orders-agent",
        "--password-file",
        password.to_str().unwrap(),
    ];
    a.use_etcd_args(&as_agent);
    a.start_agent(&etcd);
    let out = group_cmd_as(
        &etcd,
        &["--user", "orders-agent"],
        &[("FREEZEFS_ETCD_PASSWORD", "agent-secret")],
        &["freeze", "--group", "orders", "-t", "30", "--", "true"],
    );
    exited_saying(&out, 0, "a: held throughout");
    assert!(a.fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn a_user_confined_to_one_group_can_neither_serve_nor_freeze_another() {
    let etcd = etcd_with_a_group_user();
    let as_agent = ["--user", "orders-agent:agent-secret"];
    let mut b = Host::unstarted(&etcd, "payments", "b", Kind::Ext4, 3);
    b.use_etcd_args(&as_agent);
    b.spawn_agent();
    assert_eq!(
        b.agent_exit(Duration::from_secs(10)),
        Some(1),
        "{}",
        b.agent_log()
    );
    assert!(
        b.agent_log().contains("permission denied"),
        "{}",
        b.agent_log()
    );
    let out = group_cmd_as(
        &etcd,
        &as_agent,
        &[],
        &["freeze", "--group", "payments", "-t", "30"],
    );
    exited_saying(&out, 1, "permission denied");
    assert!(!b.fs.kernel_frozen());
}

/// Runs the example script as the administrator with `args`.
fn rbac(etcd: &Etcd, args: &[&str], password: &str) {
    let out = etcd.as_admin(
        &example("etcd-rbac.sh"),
        args,
        &[("USER_PASSWORD", password)],
    );
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn a_host_confined_to_its_own_keys_serves_but_cannot_forge_another_members_word_or_freeze() {
    let mut etcd = Etcd::start();
    etcd.enable_auth();
    rbac(&etcd, &["--host", "a", "shop", "shop-a"], "a-secret");
    rbac(&etcd, &["--host", "b", "shop", "shop-b"], "b-secret");
    rbac(&etcd, &["--freezer", "shop", "shop-freezer"], "f-secret");
    let mut a = Host::unstarted(&etcd, "shop", "a", Kind::Ext4, 3);
    a.use_etcd_args(&["--user", "shop-a:a-secret"]);
    a.start_agent(&etcd);
    let mut b = Host::unstarted(&etcd, "shop", "b", Kind::Xfs, 3);
    b.use_etcd_args(&["--user", "shop-b:b-secret"]);
    b.start_agent(&etcd);
    let as_freezer = ["--user", "shop-freezer:f-secret"];
    let out = group_cmd_as(
        &etcd,
        &as_freezer,
        &[],
        &["freeze", "--group", "shop", "-t", "30", "--", "true"],
    );
    exited_saying(&out, 0, "b: held throughout");
    // Host a, as its own user, tries b's keys and the epoch.
    let as_a = |args: &[&str]| {
        Command::new("etcdctl")
            .env("ETCDCTL_API", "3")
            .arg(format!("--endpoints={}", etcd.endpoints()))
            .args(["--user", "shop-a:a-secret"])
            .args(args)
            .output()
            .unwrap()
    };
    let forged = r#"{"epoch":1,"state":"frozen","frozen_at_unix_ns":1,"asked":false}"#;
    for (key, value) in [
        ("/freezefs/group/shop/report/b", forged),
        (
            "/freezefs/group/shop/member/b",
            r#"{"host":"x","pid":1,"mounts":[]}"#,
        ),
        (
            "/freezefs/group/shop/epoch",
            r#"{"members":["b"],"timeout_s":30,"by":"a"}"#,
        ),
    ] {
        let out = as_a(&["put", key, value]);
        assert!(
            !out.status.success()
                && String::from_utf8_lossy(&out.stderr).contains("permission denied"),
            "{key}: {out:?}"
        );
    }
    let out = as_a(&["del", "/freezefs/group/shop/member/b"]);
    assert!(!out.status.success(), "{out:?}");
    // And the group cannot be frozen with a host's user.
    let out = group_cmd_as(
        &etcd,
        &["--user", "shop-a:a-secret"],
        &[],
        &["freeze", "--group", "shop", "-t", "30"],
    );
    exited_saying(&out, 1, "permission denied");
    assert!(!b.fs.kernel_frozen());
}

#[test]
fn without_credentials_an_etcd_with_auth_refuses_and_nothing_freezes() {
    let etcd = etcd_with_a_group_user();
    let out = group_cmd(&etcd, &["status", "--group", "orders"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("freezefs-group: group orders:") && said.contains("user name is empty"),
        "{said}"
    );
    let out = group_cmd_as(
        &etcd,
        &["--user", "orders-agent"],
        &[],
        &["status", "--group", "orders"],
    );
    exited_saying(&out, 1, "no password");
}

/// The unit as `make install-group-unit` renders it passes systemd's own
/// check, with the binary it names in place.
#[test]
fn the_agent_unit_installs_and_passes_systemd_analyze_verify() {
    let prefix = mkdtemp("freezefs-group-unit");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    run(Command::new("make")
        .arg("-C")
        .arg(&root)
        .arg("install-group-unit")
        .arg(format!("PREFIX={}", prefix.display()))
        .arg(format!("SYSCONFDIR={}/etc", prefix.display())));
    std::fs::create_dir_all(prefix.join("sbin")).unwrap();
    std::fs::copy(group_exe(), prefix.join("sbin/freezefs-group")).unwrap();
    std::fs::create_dir_all(prefix.join("etc/freezefs")).unwrap();
    std::fs::write(
        prefix.join("etc/freezefs/group-agent.conf"),
        "FREEZEFS_ETCD_ENDPOINTS=http://127.0.0.1:2379\nFREEZEFS_GROUP=g\nFREEZEFS_NODE=n\nFREEZEFS_MOUNTS=/srv/a\n",
    )
    .unwrap();
    let unit = prefix.join("lib/systemd/system/freezefs-group-agent.service");
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(&unit)
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(!said.contains("freezefs-group-agent"), "{said}");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        format!(
            "EnvironmentFile={}/etc/freezefs/group-agent.conf",
            prefix.display()
        ),
        format!(
            "ExecStart={}/sbin/freezefs-group $FREEZEFS_ETCD_OPTIONS agent",
            prefix.display()
        ),
        "Restart=always".into(),
        "KillMode=mixed".into(),
    ] {
        assert!(text.contains(&needed), "no {needed:?} in\n{text}");
    }
    let _ = std::fs::remove_dir_all(&prefix);
}
