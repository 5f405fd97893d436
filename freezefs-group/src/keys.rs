//! The group's keys in etcd and the JSON documents under them. Everything
//! of group G lives under `/freezefs/group/G/`, so that one etcd role can be
//! confined to one group (docs/groups.md):
//!
//! | key | value | lease |
//! |---|---|---|
//! | `member/NODE` | [`Member`]: the agent and its mount points | the agent's |
//! | `epoch` | [`Epoch`]: the freeze asked for, its deadline and members | the freezing command's |
//! | `report/NODE` | [`Report`]: how this member's part of the freeze goes | the agent's |
//! | `held/NODE` | empty: what the agent deletes to say its freeze held when etcd is full | the agent's |
//! | `ended` | [`Ended`]: why the last epoch ended, when a command ended it | none |
//!
//! A report is evidence only when it was written under the lease of its
//! member's registration: etcd keeps each key's lease, and a report under
//! any other (or none) is someone else's word.
//!
//! The epoch's number is the `epoch` key's create revision: unique and
//! growing, with no counter of our own to keep.

use serde::{Deserialize, Serialize};

/// The prefix of every key of `group`.
pub(crate) fn prefix(group: &str) -> String {
    format!("/freezefs/group/{group}/")
}

pub(crate) fn member(group: &str, node: &str) -> String {
    format!("{}member/{node}", prefix(group))
}

pub(crate) fn epoch(group: &str) -> String {
    format!("{}epoch", prefix(group))
}

pub(crate) fn report(group: &str, node: &str) -> String {
    format!("{}report/{node}", prefix(group))
}

pub(crate) fn held(group: &str, node: &str) -> String {
    format!("{}held/{node}", prefix(group))
}

pub(crate) fn ended(group: &str) -> String {
    format!("{}ended", prefix(group))
}

/// What a key of `group` is, by its name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GroupKey {
    Member(String),
    Epoch,
    Report(String),
    Held(String),
    Ended,
    Other,
}

pub(crate) fn classify(group: &str, key: &[u8]) -> GroupKey {
    let Ok(key) = std::str::from_utf8(key) else {
        return GroupKey::Other;
    };
    let Some(rest) = key.strip_prefix(&prefix(group)) else {
        return GroupKey::Other;
    };
    match rest.split_once('/') {
        Some(("member", node)) if valid_name(node) => GroupKey::Member(node.to_string()),
        Some(("report", node)) if valid_name(node) => GroupKey::Report(node.to_string()),
        Some(("held", node)) if valid_name(node) => GroupKey::Held(node.to_string()),
        None if rest == "epoch" => GroupKey::Epoch,
        None if rest == "ended" => GroupKey::Ended,
        _ => GroupKey::Other,
    }
}

/// Group and node names: what fits in a key, a syslog field and a file
/// name without quoting.
pub(crate) fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        && name != "."
        && name != ".."
}

/// An agent, as it registers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Member {
    pub(crate) host: String,
    pub(crate) pid: u32,
    /// The mount points it serves: only these are ever frozen on its host.
    pub(crate) mounts: Vec<String>,
    /// Its host's wall clock when it registered, in milliseconds since the
    /// Unix epoch: shown by `status`, never used to time anything.
    #[serde(default)]
    pub(crate) clock_unix_ms: u64,
}

/// A freeze of the group, as the freezing command announces it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Epoch {
    /// Who must take part, by node name.
    pub(crate) members: Vec<String>,
    /// The timeout asked for, in seconds. No time of day travels between
    /// hosts: each host counts it on its own monotonic clock from the
    /// moment it saw the epoch, and etcd's lease on the epoch bounds it.
    pub(crate) timeout_s: u32,
    /// The freezing command, as `host:pid`.
    pub(crate) by: String,
}

/// Where a member's part of an epoch stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum ReportState {
    /// The member saw the epoch and is freezing: its agent answers.
    Freezing,
    /// Every mount of the member is frozen.
    Frozen,
    /// The member could not freeze: nothing of it is frozen.
    Failed,
    /// The member's freeze ended before the group's did (its deadline, or
    /// another tool's thaw): the group cannot be consistent.
    Ended,
    /// The member thawed.
    Thawed,
}

/// A member's word on one epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) epoch: i64,
    pub(crate) state: ReportState,
    /// When its last mount was frozen, in nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) frozen_at_unix_ns: Option<u128>,
    /// Thawed: whether every local freeze held until this member thawed it,
    /// in its kernel's word.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) held: Option<bool>,
    /// Why it failed, ended or thawed, in words.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub(crate) why: String,
    /// Thawed: true when it thawed because a command ended the epoch (and
    /// not because a member, the freezing command or etcd was lost).
    #[serde(default)]
    pub(crate) asked: bool,
}

/// Why an epoch ended, written with the epoch's deletion by the command that
/// ended it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ended {
    pub(crate) epoch: i64,
    pub(crate) why: String,
    /// True when it ended as asked (the command finished, or a thaw), not on
    /// a failure.
    pub(crate) asked: bool,
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("the group's documents always serialize")
}

pub(crate) fn from_json<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Option<T> {
    serde_json::from_slice(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_classified_by_their_place_under_the_group() {
        assert_eq!(
            classify("g", b"/freezefs/group/g/member/n1"),
            GroupKey::Member("n1".into())
        );
        assert_eq!(
            classify("g", b"/freezefs/group/g/report/n1"),
            GroupKey::Report("n1".into())
        );
        assert_eq!(classify("g", b"/freezefs/group/g/epoch"), GroupKey::Epoch);
        assert_eq!(classify("g", b"/freezefs/group/g/ended"), GroupKey::Ended);
    }

    #[test]
    fn keys_of_another_group_or_of_no_known_kind_are_other() {
        assert_eq!(classify("g", b"/freezefs/group/g2/epoch"), GroupKey::Other);
        assert_eq!(
            classify("g", b"/freezefs/group/g/member/a/b"),
            GroupKey::Other
        );
        assert_eq!(classify("g", b"/freezefs/group/g/member/"), GroupKey::Other);
        assert_eq!(classify("g", b"/freezefs/group/g/epochs"), GroupKey::Other);
        assert_eq!(classify("g", b"\xff"), GroupKey::Other);
    }

    #[test]
    fn names_are_plain_words() {
        for good in ["n1", "db-0", "web_a.b", "A"] {
            assert!(valid_name(good), "{good}");
        }
        for bad in ["", ".", "..", "a/b", "a b", "a=b", &"x".repeat(65), "é"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn documents_read_back_and_garbage_reads_as_none() {
        let report = Report {
            epoch: 7,
            state: ReportState::Thawed,
            frozen_at_unix_ns: Some(1),
            held: Some(true),
            why: "thawed".into(),
            asked: true,
        };
        assert_eq!(from_json::<Report>(&to_json(&report)), Some(report));
        assert_eq!(from_json::<Report>(b"{\"epoch\":"), None);
        assert_eq!(from_json::<Epoch>(b"[]"), None);
        let text = String::from_utf8(to_json(&ReportState::Frozen)).unwrap();
        assert_eq!(text, "\"frozen\"");
    }
}
