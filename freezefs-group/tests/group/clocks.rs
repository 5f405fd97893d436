//! Hosts whose wall clocks disagree (libfaketime on one agent, its
//! monotonic clock left alone): no time of day travels between hosts, so
//! the group freezes and thaws as if the clocks agreed.

use std::time::{Duration, Instant};

use crate::etcd_cluster::Etcd;
use crate::faults::{TTL_S, member_status};
use crate::harness::{
    Host, all_thawed_within, exited_saying, group_cmd, group_spawn, states, text,
};
use crate::support::{Kind, wait_until};

/// Two hosts, `b`'s wall clock `offset` from the machine's.
fn a_and_skewed_b(etcd: &Etcd, group: &str, offset: &str) -> [Host; 2] {
    let a = Host::start(etcd, group, "a", Kind::Ext4, TTL_S);
    let mut b = Host::unstarted(etcd, group, "b", Kind::Xfs, TTL_S);
    b.use_clock_offset(offset);
    b.start_agent(etcd);
    [a, b]
}

/// b's wall clock, as its agent registered it, minus the machine's.
fn clock_offset_s(etcd: &Etcd, group: &str) -> f64 {
    let b = member_status(etcd, group, "b");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as f64;
    (b["clock_unix_ms"].as_f64().unwrap() - now) / 1000.0
}

#[test]
fn a_host_whose_clock_is_30_s_fast_holds_the_whole_group_freeze() {
    let etcd = Etcd::start();
    let hosts = a_and_skewed_b(&etcd, "fast", "+30s");
    let offset = clock_offset_s(&etcd, "fast");
    assert!(
        (28.0..32.0).contains(&offset),
        "b's clock is {offset} s off"
    );
    let out = group_cmd(
        &etcd,
        &[
            "freeze", "--group", "fast", "-t", "12", "--ttl", "3", "--", "sleep", "6",
        ],
    );
    exited_saying(&out, 0, "b: held throughout");
    let all = text(&out);
    assert!(all.contains("a: held throughout"), "{all}");
    assert!(all.contains("b's clock is off by +"), "{all}");
    let thawed = all_thawed_within(
        &hosts.iter().collect::<Vec<_>>(),
        Instant::now(),
        Duration::from_secs(2),
    );
    assert!(thawed.is_ok(), "{thawed:?}");
}

#[test]
fn a_host_whose_clock_is_30_s_slow_thaws_with_the_group_at_its_timeout() {
    let etcd = Etcd::start();
    let hosts = a_and_skewed_b(&etcd, "slow", "-30s");
    let offset = clock_offset_s(&etcd, "slow");
    assert!(
        (-32.0..-28.0).contains(&offset),
        "b's clock is {offset} s off"
    );
    let started = Instant::now();
    let freeze = group_spawn(
        &etcd,
        &[
            "freeze", "--group", "slow", "-t", "4", "--ttl", "3", "--", "sleep", "10",
        ],
    );
    // By the members' reports: a FIFREEZE probe here would make a freeze
    // that meets it fail.
    let frozen = wait_until(Duration::from_secs(3), Duration::from_millis(20), || {
        states(&etcd, "slow").iter().all(|(_, s)| s == "frozen")
    });
    if !frozen {
        let out = freeze.wait_with_output().unwrap();
        panic!("the group did not freeze: {}", text(&out));
    }
    // Both members thaw at the group's timeout (each host's local deadline
    // is whole seconds, rounded down), long before the command ends.
    let took = all_thawed_within(
        &hosts.iter().collect::<Vec<_>>(),
        started,
        Duration::from_secs(7),
    )
    .unwrap();
    eprintln!("b's clock 30 s slow, -t 4: every member thawed {took:?} after the freeze began");
    assert!(took >= Duration::from_secs(3), "thawed early: {took:?}");
    let out = freeze.wait_with_output().unwrap();
    exited_saying(&out, 3, "the group's timeout of 4 s passed");
}
