//! The AdvFS cluster promise: whatever fails (a member's agent killed or
//! hung, the freezing command killed, etcd stopped or its leader killed,
//! another tool's thaw), every member thaws within TTL + 1 s and the group's
//! freeze is reported not consistent.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::cut_off::Relay;
use crate::etcd_cluster::Etcd;
use crate::harness::{Host, all_thawed_within, group_cmd, group_spawn, states, text};
use crate::support::{Kind, wait_until};

const TTL_S: u32 = 3;
/// The promise: every member thawed within TTL + 1 s of the failure.
const PROMISE: Duration = Duration::from_secs(TTL_S as u64 + 1);

fn three_hosts(etcd: &Etcd, group: &str) -> [Host; 3] {
    [
        Host::start(etcd, group, "a", Kind::Ext4, TTL_S),
        Host::start(etcd, group, "b", Kind::Xfs, TTL_S),
        Host::start(etcd, group, "c", Kind::Btrfs, TTL_S),
    ]
}

/// Freezes the group past its barrier, the command gone, the group frozen.
fn frozen(etcd: &Etcd, group: &str) {
    let out = group_cmd(
        etcd,
        &[
            "freeze",
            "--group",
            group,
            "-t",
            "60",
            "--ttl",
            &TTL_S.to_string(),
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
}

/// `thaw` of a group whose freeze broke: exit 1, each survivor not
/// consistent, and the broken member named.
fn thaw_reports_inconsistent(etcd: &Etcd, group: &str, broken: &str) {
    let out = group_cmd(etcd, &["thaw", "--group", group]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("not consistent"), "{all}");
    assert!(all.contains(broken), "{all}");
}

#[test]
fn an_agent_killed_after_the_barrier_thaws_every_member_within_the_ttl() {
    let etcd = Etcd::start();
    let hosts = three_hosts(&etcd, "kill");
    frozen(&etcd, "kill");
    hosts[1].signal(Signal::KILL);
    let killed = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), killed, PROMISE).unwrap();
    eprintln!("agent kill -9: every member thawed {took:?} after");
    thaw_reports_inconsistent(&etcd, "kill", "member b was lost");
}

#[test]
fn an_agent_stopped_with_sigstop_thaws_every_member_its_own_host_too_within_the_ttl() {
    let etcd = Etcd::start();
    let mut hosts = three_hosts(&etcd, "stop");
    frozen(&etcd, "stop");
    hosts[1].signal(Signal::STOP);
    let stopped = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), stopped, PROMISE).unwrap();
    eprintln!("agent SIGSTOP: every member thawed {took:?} after");
    thaw_reports_inconsistent(&etcd, "stop", "member b was lost");
    // Its host's holder ended the freeze, and said whose it was.
    let messages = hosts[1].syslog.drain();
    assert!(
        messages.iter().any(|m| m.contains("]: freezefs.timeout ")
            && m.contains(" group=stop epoch=")
            && m.ends_with(" node=b")),
        "no tagged timeout in {messages:#?}"
    );
    // Woken, it finds its lease gone and exits rather than serve on.
    hosts[1].signal(Signal::CONT);
    assert_eq!(
        hosts[1].agent_exit(Duration::from_secs(10)),
        Some(1),
        "{}",
        hosts[1].agent_log()
    );
}

#[test]
fn an_agent_that_loses_etcd_alone_thaws_its_own_host_and_every_other_within_the_ttl() {
    let etcd = Etcd::start();
    let relay = Relay::start(etcd.endpoints().trim_start_matches("http://"));
    let mut b = Host::unstarted(&etcd, "cut", "b", Kind::Xfs, TTL_S);
    b.use_endpoints(&relay.url);
    b.start_agent(&etcd);
    let hosts = [
        Host::start(&etcd, "cut", "a", Kind::Ext4, TTL_S),
        b,
        Host::start(&etcd, "cut", "c", Kind::Btrfs, TTL_S),
    ];
    frozen(&etcd, "cut");
    relay.cut();
    let cut = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), cut, PROMISE).unwrap();
    eprintln!("an agent cut off from etcd: every member thawed {took:?} after");
    thaw_reports_inconsistent(&etcd, "cut", "member b was lost");
}

#[test]
fn the_freezing_command_killed_thaws_every_member_within_the_ttl() {
    let etcd = Etcd::start();
    let hosts = three_hosts(&etcd, "cmd");
    let mut freeze = group_spawn(
        &etcd,
        &[
            "freeze", "--group", "cmd", "-t", "60", "--ttl", "3", "--", "sleep", "60",
        ],
    );
    let at_barrier = wait_until(Duration::from_secs(15), Duration::from_millis(50), || {
        states(&etcd, "cmd").iter().all(|(_, s)| s == "frozen")
    });
    assert!(at_barrier, "{:?}", states(&etcd, "cmd"));
    freeze.kill().unwrap();
    let killed = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), killed, PROMISE);
    // Its command (sleep) is in its process group.
    let pgid = rustix::process::Pid::from_raw(freeze.id() as i32).unwrap();
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    let _ = freeze.wait();
    let took = took.unwrap();
    eprintln!("freezing command kill -9: every member thawed {took:?} after");
    let out = group_cmd(&etcd, &["thaw", "--group", "cmd"]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("is not frozen") && all.contains("the freezing command was lost"),
        "{all}"
    );
}

#[test]
fn etcd_stopped_thaws_every_member_within_the_ttl() {
    let mut etcd = Etcd::start();
    let mut hosts = three_hosts(&etcd, "etcd");
    frozen(&etcd, "etcd");
    etcd.stop();
    let stopped = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), stopped, PROMISE).unwrap();
    eprintln!("etcd stopped: every member thawed {took:?} after");
    for host in &mut hosts {
        assert_eq!(
            host.agent_exit(Duration::from_secs(10)),
            Some(1),
            "{}",
            host.agent_log()
        );
        assert!(
            host.agent_log().contains("lost its etcd lease"),
            "{}",
            host.agent_log()
        );
    }
}

#[test]
fn another_tool_thawing_one_member_ends_the_group_at_once_and_the_command_exits_3() {
    let etcd = Etcd::start();
    let hosts = three_hosts(&etcd, "other");
    let marker = hosts[1].fs.dir.join("thawed-by-another-tool");
    let thaw_b = format!(
        "sleep 1; fsfreeze -u {}; touch {}; sleep 8",
        hosts[1].fs.mnt.display(),
        marker.display()
    );
    let freeze = group_spawn(
        &etcd,
        &[
            "freeze", "--group", "other", "-t", "60", "--", "sh", "-c", &thaw_b,
        ],
    );
    assert!(wait_until(
        Duration::from_secs(15),
        Duration::from_millis(20),
        || marker.exists()
    ));
    let thawed = Instant::now();
    // The others thaw as soon as b's agent notices, long before the command ends.
    let took = all_thawed_within(&[&hosts[0], &hosts[2]], thawed, Duration::from_secs(2)).unwrap();
    eprintln!("another tool's thaw of one member: the others thawed {took:?} after");
    let out = freeze.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("member b's freeze ended early") && all.contains("another tool thawed it"),
        "{all}"
    );
    assert!(
        all.contains("did not hold throughout on") && all.contains("b"),
        "{all}"
    );
}

#[test]
fn the_etcd_leader_killed_leaves_the_group_all_frozen_or_all_thawed_and_the_report_true() {
    let mut etcd = Etcd::cluster(3);
    let hosts = [
        Host::start(&etcd, "lead", "a", Kind::Ext4, 5),
        Host::start(&etcd, "lead", "b", Kind::Ext4, 5),
        Host::start(&etcd, "lead", "c", Kind::Ext4, 5),
    ];
    let out = group_cmd(&etcd, &["freeze", "--group", "lead", "-t", "60"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let leader = etcd.kill_leader();
    eprintln!("killed etcd leader {leader}");
    std::thread::sleep(Duration::from_secs(7));
    let thawed: Vec<bool> = hosts
        .iter()
        .map(|h| h.fs.write_completes_within(Duration::from_millis(500)))
        .collect();
    let out = group_cmd(&etcd, &["thaw", "--group", "lead"]);
    let logs: Vec<String> = hosts
        .iter()
        .map(|h| format!("{}: {}", h.name, h.agent_log()))
        .collect();
    let all = format!("{}\nagents:\n{}", text(&out), logs.join("\n"));
    if thawed.iter().all(|t| !t) {
        eprintln!("the group's freeze survived the leader's death");
        assert_eq!(out.status.code(), Some(0), "{all}");
        for host in &hosts {
            assert!(
                all.contains(&format!("{}: held throughout", host.name)),
                "{all}"
            );
        }
    } else {
        assert!(
            thawed.iter().all(|t| *t),
            "some members frozen, some not: {thawed:?}"
        );
        eprintln!("the group's freeze ended cleanly with the leader's death");
        assert_eq!(out.status.code(), Some(1), "{all}");
    }
    let after = all_thawed_within(
        &hosts.iter().collect::<Vec<_>>(),
        Instant::now(),
        Duration::from_secs(5),
    );
    assert!(after.is_ok(), "{after:?}");
}
