//! The group freezes as one: every member or none, only the mounts each
//! agent serves, and a command run between the barrier and the thaw.

use std::process::Output;
use std::time::Duration;

use crate::cut_off::Relay;
use crate::etcd_cluster::Etcd;
use crate::harness::{Host, exited_saying, group_cmd, group_spawn, states, text};
use crate::support::{Kind, Scratch, check_image, wait_until};

#[test]
fn three_agents_freeze_at_once_and_every_image_copied_meanwhile_is_clean() {
    let etcd = Etcd::start();
    let hosts = [
        Host::start(&etcd, "g", "a", Kind::Ext4, 3),
        Host::start(&etcd, "g", "b", Kind::Xfs, 3),
        Host::start(&etcd, "g", "c", Kind::Btrfs, 3),
    ];
    // Writers keep every filesystem busy up to the freeze and after it.
    let busy: Vec<_> = hosts.iter().map(|h| busy_writer(&h.fs)).collect();
    // Beside the first host's mount, and removed with it.
    let copies = hosts[0].fs.dir.join("copies");
    std::fs::create_dir(&copies).unwrap();
    let script: Vec<String> = hosts
        .iter()
        .map(|h| {
            format!(
                "cp {} {}/{}",
                h.fs.image.as_ref().unwrap().display(),
                copies.display(),
                h.name
            )
        })
        .collect();
    let out = group_cmd(
        &etcd,
        &[
            "freeze",
            "--group",
            "g",
            "-t",
            "60",
            "--",
            "sh",
            "-c",
            &script.join(" && "),
        ],
    );
    for stop in busy {
        stop();
    }
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for host in &hosts {
        assert!(
            stderr.contains(&format!("{}: held throughout", host.name)),
            "{stderr}"
        );
        check_image(host.fs.kind, &copies.join(&host.name));
        assert!(
            host.fs.write_completes_within(Duration::from_secs(2)),
            "{} still frozen",
            host.name
        );
    }
}

/// Writes a file after file on `fs` until the returned closure is called.
fn busy_writer(fs: &Scratch) -> impl FnOnce() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    let stop = Arc::new(AtomicBool::new(false));
    let dir = fs.mnt.clone();
    let flag = stop.clone();
    let writer = std::thread::spawn(move || {
        let mut n = 0u32;
        while !flag.load(Ordering::SeqCst) {
            let _ = std::fs::write(
                dir.join(format!("busy.{}", n % 64)),
                vec![n as u8; 64 << 10],
            );
            n += 1;
        }
    });
    move || {
        stop.store(true, Ordering::SeqCst);
        writer.join().unwrap();
    }
}

/// Round trips to etcd longer than the agent's 250 ms renewal timer: its
/// watch is created all the same (it once was begun again at every tick).
#[test]
fn an_agent_whose_round_trip_to_etcd_is_400_ms_freezes_with_the_group() {
    let etcd = Etcd::start();
    let relay = Relay::with_delay(
        etcd.endpoints().trim_start_matches("http://"),
        Duration::from_millis(200),
    );
    let mut far = Host::unstarted(&etcd, "far", "b", Kind::Ext4, 5);
    far.use_endpoints(&relay.url);
    far.start_agent(&etcd);
    let _near = Host::start(&etcd, "far", "a", Kind::Ext4, 5);
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "far", "-t", "30", "--", "true"],
    );
    exited_saying(&out, 0, "b: held throughout");
}

#[test]
fn each_members_events_carry_the_group_and_the_epoch() {
    let etcd = Etcd::start();
    let hosts = [
        Host::start(&etcd, "ev", "a", Kind::Ext4, 3),
        Host::start(&etcd, "ev", "b", Kind::Ext4, 3),
    ];
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "ev", "-t", "30", "--", "true"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    let epoch: String = stderr
        .split("(epoch ")
        .nth(1)
        .and_then(|rest| rest.split(')').next())
        .expect("the epoch is named")
        .to_string();
    for host in &hosts {
        let messages = host.syslog.drain();
        for what in ["frozen", "thawed"] {
            let wanted = format!(
                "freezefs.group what={what} group=ev epoch={epoch} node={} ",
                host.name
            );
            assert!(
                messages.iter().any(|m| m.contains(&wanted)),
                "no {wanted:?} in {messages:#?}"
            );
        }
        // The library's own events about the host's freeze carry them too.
        let tag = format!(" group=ev epoch={epoch} node={}", host.name);
        for kind in ["freezefs.frozen", "freezefs.thawed"] {
            assert!(
                messages
                    .iter()
                    .any(|m| m.contains(&format!("]: {kind} ")) && m.ends_with(&tag)),
                "no {kind} ending {tag:?} in {messages:#?}"
            );
        }
    }
}

/// The freeze exited 1 saying `says`, and every host named takes writes.
fn refused_and_nothing_left_frozen(out: &Output, says: &str, hosts: &[&Host]) {
    exited_saying(out, 1, says);
    for host in hosts {
        assert!(
            host.fs.write_completes_within(Duration::from_secs(2)),
            "{} left frozen",
            host.name
        );
    }
}

#[test]
fn a_member_on_tmpfs_refuses_and_nothing_is_left_frozen_anywhere() {
    let etcd = Etcd::start();
    let hosts = [
        Host::start(&etcd, "r", "a", Kind::Ext4, 3),
        Host::start(&etcd, "r", "b", Kind::Tmpfs, 3),
        Host::start(&etcd, "r", "c", Kind::Ext4, 3),
    ];
    let out = group_cmd(&etcd, &["freeze", "--group", "r", "-t", "30", "--", "true"]);
    refused_and_nothing_left_frozen(&out, "member b could not freeze", &[&hosts[0], &hosts[2]]);
    assert!(
        states(&etcd, "r").iter().all(|(_, s)| s == "idle"),
        "{:?}",
        states(&etcd, "r")
    );
}

#[test]
fn a_failing_freeze_hook_on_one_member_leaves_nothing_frozen_anywhere() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "h", "a", Kind::Ext4, 3);
    let b = Host::start(&etcd, "h", "b", Kind::Xfs, 3);
    b.failing_freeze_hook();
    let out = group_cmd(&etcd, &["freeze", "--group", "h", "-t", "30"]);
    refused_and_nothing_left_frozen(&out, "member b could not freeze", &[&a, &b]);
}

#[test]
fn a_member_that_misses_the_barrier_thaws_with_the_rest_and_nothing_is_left_frozen() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "slow", "a", Kind::Ext4, 3);
    let b = Host::start(&etcd, "slow", "b", Kind::Ext4, 3);
    b.freeze_hook("sleep 4");
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "slow", "-t", "2", "--", "true"],
    );
    refused_and_nothing_left_frozen(&out, "b did not freeze within 2 s", &[&a, &b]);
}

#[test]
fn only_the_members_named_freeze_and_the_others_go_on() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "some", "a", Kind::Ext4, 3);
    let b = Host::start(&etcd, "some", "b", Kind::Ext4, 3);
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "some", "--members", "a", "-t", "30"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(
        b.fs.write_completes_within(Duration::from_secs(2)),
        "b froze though not named"
    );
    assert!(
        !a.fs.write_completes_within(Duration::from_millis(300)),
        "a is not frozen"
    );
    assert_eq!(
        states(&etcd, "some"),
        [
            ("a".to_string(), "frozen".to_string()),
            ("b".to_string(), "idle".to_string())
        ]
    );
    let thaw = group_cmd(&etcd, &["thaw", "--group", "some"]);
    assert_eq!(thaw.status.code(), Some(0), "{}", text(&thaw));
    assert!(a.fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn a_member_without_an_agent_is_refused_before_anything_freezes() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "m", "a", Kind::Ext4, 3);
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "m", "--members", "a,ghost", "-t", "30"],
    );
    exited_saying(&out, 1, "member ghost has no agent");
    assert!(!a.fs.kernel_frozen());
}

#[test]
fn a_mount_the_agent_was_not_started_with_is_never_frozen_whatever_the_keys_say() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "k", "a", Kind::Ext4, 3);
    let elsewhere = Scratch::new(Kind::Ext4);
    let forged = format!(
        "{{\"host\":\"x\",\"pid\":1,\"mounts\":[\"{}\"]}}",
        elsewhere.mnt.display()
    );
    // Under the agent's own lease, so that it reads as the agent's own
    // registration (a key under no lease is no agent's, and is refused).
    let key = "/freezefs/group/k/member/a";
    let got = etcd.etcdctl(&["get", key, "-w", "json"]);
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let lease = got["kvs"][0]["lease"].as_i64().expect("the agent's lease");
    let put = etcd.etcdctl(&["put", key, &forged, &format!("--lease={lease:x}")]);
    assert!(put.status.success(), "{put:?}");
    let mut freeze = group_spawn(
        &etcd,
        &["freeze", "--group", "k", "-t", "30", "--", "sleep", "2"],
    );
    let frozen = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        states(&etcd, "k").iter().all(|(_, s)| s == "frozen")
    });
    assert!(frozen, "{:?}", states(&etcd, "k"));
    assert!(
        !elsewhere.kernel_frozen(),
        "a mount no agent serves was frozen"
    );
    assert!(
        !a.fs.write_completes_within(Duration::from_millis(300)),
        "the agent's own mount is not frozen"
    );
    assert!(freeze.wait().unwrap().success());
}

#[test]
fn a_second_freeze_of_a_frozen_group_is_refused_and_the_first_holds() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "twice", "a", Kind::Ext4, 3);
    let first = group_cmd(&etcd, &["freeze", "--group", "twice", "-t", "30"]);
    assert_eq!(first.status.code(), Some(0), "{}", text(&first));
    let second = group_cmd(&etcd, &["freeze", "--group", "twice", "-t", "30"]);
    exited_saying(&second, 1, "frozen already");
    let thaw = group_cmd(&etcd, &["thaw", "--group", "twice"]);
    exited_saying(&thaw, 0, "a: held throughout");
    assert!(a.fs.write_completes_within(Duration::from_secs(2)));
    let again = group_cmd(&etcd, &["thaw", "--group", "twice"]);
    exited_saying(&again, 1, "is not frozen");
}
