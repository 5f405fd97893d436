//! Hold hooks on group members: a member's hold lasts as long as its part
//! of the group's freeze, and one that ends while frozen makes that member,
//! and so the group's snapshot, not consistent.

use std::time::{Duration, Instant};

use crate::etcd_cluster::Etcd;
use crate::harness::{Host, group_cmd, text};
use crate::support::{Kind, wait_until};

const TTL_S: u32 = 3;

#[test]
fn a_members_hold_hook_is_told_when_the_groups_freeze_ends() {
    let etcd = Etcd::start();
    let a = Host::start(&etcd, "held", "a", Kind::Ext4, TTL_S);
    let _b = Host::start(&etcd, "held", "b", Kind::Xfs, TTL_S);
    a.hold_hook("50-lock", "true");
    let out = group_cmd(
        &etcd,
        &["freeze", "--group", "held", "-t", "60", "--", "sleep", "1"],
    );
    let ended = Instant::now();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    // The freezefs_hold_grace default, and a second.
    assert!(
        wait_until(Duration::from_secs(6), Duration::from_millis(10), || {
            a.hold_log().contains("50-lock told thaw thawed")
        }),
        "the hold was not told: {}",
        a.hold_log()
    );
    eprintln!(
        "group: member a's hold was told {:?} after the group's command returned",
        ended.elapsed()
    );
}

#[test]
fn a_members_hold_hook_ending_while_frozen_makes_the_group_not_consistent() {
    let etcd = Etcd::start();
    let _a = Host::start(&etcd, "broken", "a", Kind::Ext4, TTL_S);
    let b = Host::start(&etcd, "broken", "b", Kind::Btrfs, TTL_S);
    b.hold_hook("50-quits", "sleep 0.5; kill $$");
    let out = group_cmd(
        &etcd,
        &[
            "freeze", "--group", "broken", "-t", "60", "--", "sleep", "2",
        ],
    );
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let all = text(&out);
    assert!(
        all.contains("hold hook 50-quits ended while frozen"),
        "{all}"
    );
}
