//! The group's word under the faults a hostile probe found (issue 25): a
//! watch gap across a compaction, a lost member with nobody to end the
//! epoch, forged or lost keys, garbage values, a member nobody serves, a
//! duplicate name (clocks that disagree: clocks.rs; a full etcd:
//! full_etcd.rs). Each test is one row of the failure table in
//! docs/groups.md.

use std::time::{Duration, Instant};

use rustix::process::Signal;

use crate::cut_off::Relay;
use crate::etcd_cluster::Etcd;
use crate::harness::{
    Host, all_thawed_within, exited_saying, group_cmd, group_spawn, status_json, text,
};
use crate::support::{Kind, wait_until};

pub(crate) const TTL_S: u32 = 3;
/// The promise: every member thawed within TTL + 1 s of the failure.
pub(crate) const PROMISE: Duration = Duration::from_secs(TTL_S as u64 + 1);

pub(crate) fn freeze_args<'a>(group: &'a str, timeout: &'a str) -> Vec<&'a str> {
    vec!["freeze", "--group", group, "-t", timeout, "--ttl", "3"]
}

/// The group freezes again, `count` members, and thaws with `node` held
/// throughout: whatever came before left nothing stuck.
pub(crate) fn freezes_and_thaws_whole(etcd: &Etcd, group: &str, count: usize, node: &str) {
    let out = group_cmd(etcd, &freeze_args(group, "30"));
    exited_saying(&out, 0, &format!("{count} members frozen"));
    let out = group_cmd(etcd, &["thaw", "--group", group]);
    exited_saying(&out, 0, &format!("{node}: held throughout"));
}

/// Two hosts, `a` on ext4 and `b` on xfs, their agents registered.
pub(crate) fn a_and_b(etcd: &Etcd, group: &str) -> [Host; 2] {
    [
        Host::start(etcd, group, "a", Kind::Ext4, TTL_S),
        Host::start(etcd, group, "b", Kind::Xfs, TTL_S),
    ]
}

/// The member `name`'s entry in `status --json`, if it is registered.
fn registered_member(etcd: &Etcd, group: &str, name: &str) -> Option<serde_json::Value> {
    status_json(etcd, group)["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == name)
        .cloned()
}

/// The member `name`'s entry in `status --json`, which must be there.
pub(crate) fn member_status(etcd: &Etcd, group: &str, name: &str) -> serde_json::Value {
    registered_member(etcd, group, name).unwrap_or_else(|| panic!("no member {name}"))
}

#[test]
fn an_epoch_that_ended_while_a_members_watch_was_cut_and_compacted_is_thawed_on_reconnect() {
    let etcd = Etcd::start();
    let relay = Relay::start(etcd.endpoints().trim_start_matches("http://"));
    // A TTL longer than the partition: the agent keeps its lease through it.
    let mut b = Host::unstarted(&etcd, "gap", "b", Kind::Xfs, 12);
    b.use_endpoints(&relay.url);
    b.start_agent(&etcd);
    let a = Host::start(&etcd, "gap", "a", Kind::Ext4, TTL_S);
    let out = group_cmd(&etcd, &freeze_args("gap", "60"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    relay.stall(true);
    let thaw = group_spawn(&etcd, &["thaw", "--group", "gap"]);
    assert!(a.fs.write_completes_within(Duration::from_secs(3)));
    etcd.compact();
    // While b cannot hear, it is still frozen, and status says so.
    assert!(!b.fs.write_completes_within(Duration::from_millis(300)));
    let seen = member_status(&etcd, "gap", "b");
    assert_eq!(seen["state"], "frozen", "{seen}");
    assert_eq!(seen["stale"], true, "{seen}");
    std::thread::sleep(Duration::from_secs(4));
    relay.stall(false);
    let healed = Instant::now();
    let took = all_thawed_within(&[&b], healed, Duration::from_secs(5)).unwrap();
    eprintln!("a watch gap across a compaction: b thawed {took:?} after the partition healed");
    let out = thaw.wait_with_output().unwrap();
    exited_saying(&out, 0, "b: held throughout");
    assert!(!b.agent_log().contains("panicked"), "{}", b.agent_log());
}

#[test]
fn a_member_lost_in_a_freeze_without_a_command_ends_the_epoch_and_the_next_freeze_is_accepted() {
    let etcd = Etcd::start();
    let mut hosts = [
        Host::start(&etcd, "lost", "a", Kind::Ext4, TTL_S),
        Host::start(&etcd, "lost", "b", Kind::Xfs, TTL_S),
        Host::start(&etcd, "lost", "c", Kind::Btrfs, TTL_S),
    ];
    let out = group_cmd(&etcd, &freeze_args("lost", "60"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    hosts[1].signal(Signal::KILL);
    let killed = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), killed, PROMISE).unwrap();
    eprintln!("a member lost without a command: every member thawed {took:?} after");
    let ended = wait_until(PROMISE, Duration::from_millis(50), || {
        status_json(&etcd, "lost")["frozen"] == false
    });
    let status = status_json(&etcd, "lost");
    assert!(ended, "{status}");
    assert!(
        status["why"]
            .as_str()
            .unwrap_or("")
            .contains("member b was lost"),
        "{status}"
    );
    let started = Instant::now();
    let out = group_cmd(&etcd, &["thaw", "--group", "lost"]);
    exited_saying(&out, 1, "is not frozen");
    assert!(
        started.elapsed() < PROMISE,
        "thaw took {:?}",
        started.elapsed()
    );
    let _ = hosts[1].agent_exit(Duration::from_secs(1));
    hosts[1].start_agent(&etcd);
    freezes_and_thaws_whole(&etcd, "lost", 3, "b");
}

#[test]
fn a_member_lost_while_etcd_hung_leaves_no_stuck_group_and_the_next_freeze_is_accepted() {
    let etcd = Etcd::start();
    let mut hosts = a_and_b(&etcd, "hung");
    let out = group_cmd(&etcd, &freeze_args("hung", "60"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    hosts[1].signal(Signal::KILL);
    etcd.hang(true);
    let hung = Instant::now();
    let took = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), hung, PROMISE);
    std::thread::sleep(Duration::from_secs(u64::from(TTL_S)));
    etcd.hang(false);
    let took = took.unwrap();
    eprintln!("a member lost while etcd hung: every member thawed {took:?} after");
    // The agents that lived lost their leases in the hang and stopped, as
    // they do when etcd is gone (whether one of them ended the epoch on its
    // way out depends on the timing): status does not call the group
    // frozen, and says why.
    let resumed = Instant::now();
    let said = wait_until(PROMISE, Duration::from_millis(50), || {
        status_json(&etcd, "hung")["frozen"] == false
    });
    let status = status_json(&etcd, "hung");
    assert!(
        said,
        "{:?} after etcd came back: {status}",
        resumed.elapsed()
    );
    assert!(status["why"].as_str().is_some(), "{status}");
    for host in &mut hosts {
        let _ = host.agent_exit(Duration::from_secs(5));
        host.start_agent(&etcd);
    }
    freezes_and_thaws_whole(&etcd, "hung", 2, "a");
}

#[test]
fn an_epoch_left_behind_by_a_lost_member_is_ended_by_the_next_freeze() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "behind", "a", Kind::Ext4, TTL_S);
    let left = r#"{"members":["a","gone"],"timeout_s":60,"by":"elsewhere:1"}"#;
    let put = etcd.etcdctl(&["put", "/freezefs/group/behind/epoch", left]);
    assert!(put.status.success(), "{put:?}");
    let status = status_json(&etcd, "behind");
    assert_eq!(status["frozen"], false, "{status}");
    let out = group_cmd(&etcd, &freeze_args("behind", "30"));
    exited_saying(&out, 0, "left behind: member gone was lost");
    let out = group_cmd(&etcd, &["thaw", "--group", "behind"]);
    exited_saying(&out, 0, "a: held throughout");
    assert!(a.fs.write_completes_within(Duration::from_secs(2)));
}

#[test]
fn thaw_of_a_group_whose_member_hangs_answers_within_the_ttl() {
    let etcd = Etcd::start();
    let hosts = a_and_b(&etcd, "prompt");
    let out = group_cmd(&etcd, &freeze_args("prompt", "60"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    hosts[1].signal(Signal::STOP);
    let started = Instant::now();
    let out = group_cmd(&etcd, &["thaw", "--group", "prompt"]);
    let answered = started.elapsed();
    assert!(answered < PROMISE, "thaw took {answered:?}: {}", text(&out));
    exited_saying(&out, 1, "b: not consistent");
    assert!(text(&out).contains("a: held throughout"), "{}", text(&out));
    let thawed = all_thawed_within(&hosts.iter().collect::<Vec<_>>(), started, PROMISE);
    hosts[1].signal(Signal::CONT);
    assert!(thawed.is_ok(), "{thawed:?}");
}

#[test]
fn a_frozen_report_written_by_someone_else_is_ignored_and_named() {
    let etcd = Etcd::start();
    let [a, b] = a_and_b(&etcd, "forge");
    let hook_done = b.fs.dir.join("hook-done");
    b.freeze_hook(&format!("sleep 3; touch {}", hook_done.display()));
    let (early, ok) = (a.fs.dir.join("ran-early"), a.fs.dir.join("ran-after"));
    let cmd = format!(
        "if [ -e {} ]; then touch {}; else touch {}; fi",
        hook_done.display(),
        ok.display(),
        early.display()
    );
    let freeze = group_spawn(
        &etcd,
        &[
            "freeze", "--group", "forge", "-t", "30", "--ttl", "3", "--", "sh", "-c", &cmd,
        ],
    );
    let epoch = {
        let mut epoch = None;
        wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            epoch = status_json(&etcd, "forge")["epoch"].as_i64();
            epoch.is_some()
        });
        epoch.expect("the epoch")
    };
    let forged = format!(
        "{{\"epoch\":{epoch},\"state\":\"frozen\",\"frozen_at_unix_ns\":1,\"asked\":false}}"
    );
    let put = etcd.etcdctl(&["put", "/freezefs/group/forge/report/b", &forged]);
    assert!(put.status.success(), "{put:?}");
    let out = freeze.wait_with_output().unwrap();
    assert!(
        !early.exists(),
        "the command ran before b froze: {}",
        text(&out)
    );
    assert!(ok.exists(), "{}", text(&out));
    exited_saying(&out, 0, "ignored report/b");
}

#[test]
fn an_agent_whose_registration_is_deleted_registers_again_within_a_second() {
    let etcd = Etcd::start();
    let [a, b] = a_and_b(&etcd, "reg");
    let deleted_at_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let del = etcd.etcdctl(&["del", "/freezefs/group/reg/member/b"]);
    assert!(del.status.success(), "{del:?}");
    // Looked for with a margin (each look is a client process of its own,
    // slow on a loaded machine); the agent's own clock in its new
    // registration says when it registered again.
    let mut again = None;
    wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        // Absent until the agent notices the deletion.
        again = registered_member(&etcd, "reg", "b").filter(|m| m["pid"] == b.pid());
        again.is_some()
    });
    let again = again.unwrap_or_else(|| panic!("not registered again: {}", b.agent_log()));
    let took_ms = again["clock_unix_ms"].as_u64().unwrap() - deleted_at_ms;
    assert!(
        took_ms < 1000,
        "registered again {took_ms} ms after: {}",
        b.agent_log()
    );
    assert!(
        b.agent_log().contains("was deleted; registered again"),
        "{}",
        b.agent_log()
    );
    freezes_and_thaws_whole(&etcd, "reg", 2, "b");
    drop(a);
}

#[test]
fn a_garbage_epoch_is_reported_broken_refused_by_freeze_and_ended_by_thaw() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "junk", "a", Kind::Ext4, TTL_S);
    let put = etcd.etcdctl(&["put", "/freezefs/group/junk/epoch", "garbage"]);
    assert!(put.status.success(), "{put:?}");
    let status = status_json(&etcd, "junk");
    assert_eq!(status["broken"], true, "{status}");
    assert_eq!(status["frozen"], false, "{status}");
    let out = group_cmd(&etcd, &freeze_args("junk", "30"));
    exited_saying(&out, 1, "is not an epoch");
    assert!(!a.fs.kernel_frozen());
    let out = group_cmd(&etcd, &["thaw", "--group", "junk"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    freezes_and_thaws_whole(&etcd, "junk", 1, "a");
}

#[test]
fn a_member_key_without_a_lease_is_refused_at_once_and_nothing_freezes() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "ghost", "a", Kind::Ext4, TTL_S);
    let doc = r#"{"host":"nowhere","pid":1,"mounts":["/srv"]}"#;
    let put = etcd.etcdctl(&["put", "/freezefs/group/ghost/member/ghost", doc]);
    assert!(put.status.success(), "{put:?}");
    let started = Instant::now();
    let out = group_cmd(&etcd, &freeze_args("ghost", "30"));
    exited_saying(&out, 1, "member ghost's key has no lease");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(!a.fs.kernel_frozen());
}

#[test]
fn a_member_that_no_agent_serves_fails_the_barrier_within_the_ttl_and_nothing_stays_frozen() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "mute", "a", Kind::Ext4, TTL_S);
    let grant = etcd.etcdctl(&["lease", "grant", "60"]);
    let granted = String::from_utf8_lossy(&grant.stdout);
    let lease = granted.split_whitespace().nth(1).expect("a lease id");
    let doc = r#"{"host":"nowhere","pid":1,"mounts":["/srv"]}"#;
    let key = "/freezefs/group/mute/member/mute";
    let put = etcd.etcdctl(&["put", key, doc, &format!("--lease={lease}")]);
    assert!(put.status.success(), "{put:?}");
    let started = Instant::now();
    let out = group_cmd(&etcd, &freeze_args("mute", "30"));
    let took = started.elapsed();
    exited_saying(&out, 1, "mute did not answer within 4 s");
    assert!(took < PROMISE + Duration::from_secs(1), "{took:?}");
    assert!(a.fs.write_completes_within(Duration::from_secs(1)));
}

#[test]
fn a_member_named_twice_is_a_usage_error_and_nothing_freezes() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "twice", "a", Kind::Ext4, TTL_S);
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "twice", "--members", "a,a", "-t", "30"],
    );
    exited_saying(&out, 2, "--members names a twice");
    assert!(!a.fs.kernel_frozen());
}
