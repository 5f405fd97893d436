//! A full etcd (its NOSPACE alarm: reads and deletes pass, puts do not):
//! ending a freeze still thaws every member at once, and the members' word
//! on it still reaches the one who ended it.

use std::time::{Duration, Instant};

use crate::etcd_cluster::Etcd;
use crate::faults::{a_and_b, freeze_args};
use crate::harness::{all_thawed_within, exited_saying, group_cmd, group_spawn, status_json, text};
use crate::support::wait_until;

/// A quota small enough to fill in seconds, large enough for the group.
const QUOTA: u64 = 4 << 20;

#[test]
fn a_full_etcd_still_thaws_every_member_at_once() {
    let etcd = Etcd::with_quota(QUOTA);
    let hosts = a_and_b(&etcd, "full");
    let out = group_cmd(&etcd, &freeze_args("full", "60"));
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    etcd.fill_until_full();
    let started = Instant::now();
    let thaw = group_spawn(&etcd, &["thaw", "--group", "full"]);
    let took = all_thawed_within(
        &hosts.iter().collect::<Vec<_>>(),
        started,
        Duration::from_secs(1),
    );
    let out = thaw.wait_with_output().unwrap();
    let answered = started.elapsed();
    let took = took.unwrap_or_else(|e| panic!("{e}: {}", text(&out)));
    eprintln!(
        "etcd full: every member thawed {took:?} after thaw began; thaw answered after {answered:?}"
    );
    exited_saying(&out, 0, "etcd is full");
    let all = text(&out);
    assert!(all.contains("a: held throughout"), "{all}");
    assert!(all.contains("b: held throughout"), "{all}");
}

#[test]
fn a_full_etcd_during_the_command_keeps_the_commands_exit_status() {
    let etcd = Etcd::with_quota(QUOTA);
    let hosts = a_and_b(&etcd, "fullcmd");
    let go = hosts[0].fs.dir.join("go");
    let cmd = format!(
        // Bounded, so that a failing test leaves no command behind.
        "for _ in $(seq 400); do [ -e {} ] && exit 7; sleep 0.05; done; exit 7",
        go.display()
    );
    let freeze = group_spawn(
        &etcd,
        &[
            "freeze", "--group", "fullcmd", "-t", "60", "--ttl", "3", "--", "sh", "-c", &cmd,
        ],
    );
    let frozen = wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
        status_json(&etcd, "fullcmd")["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["state"] == "frozen")
    });
    assert!(frozen, "{}", status_json(&etcd, "fullcmd"));
    etcd.fill_until_full();
    std::fs::write(&go, "").unwrap();
    let out = freeze.wait_with_output().unwrap();
    exited_saying(&out, 7, "etcd is full");
    assert!(text(&out).contains("b: held throughout"), "{}", text(&out));
    let thawed = all_thawed_within(
        &hosts.iter().collect::<Vec<_>>(),
        Instant::now(),
        Duration::from_secs(1),
    );
    assert!(thawed.is_ok(), "{thawed:?}");
}
