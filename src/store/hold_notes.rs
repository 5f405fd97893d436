//! The hold hooks a record lists, and a hold that broke: their lines in a
//! record (each field one escaped word, so that any bytes fit).

use crate::os::mounts::{escape_octal, unescape_octal};

/// A hold hook holding for this freeze (see `crate::holds`): its name,
/// its process (the leader of its process group) and what it said ready.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HoldNote {
    pub(crate) name: String,
    pub(crate) pid: u32,
    pub(crate) pid_start: u64,
    pub(crate) ready: String,
}

/// A hold hook that ended while its freeze was in force: the freeze did
/// not hold what it promised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HoldBreakNote {
    pub(crate) name: String,
    /// When it ended (wall clock, nanoseconds since the epoch; 0 when not
    /// known: its process was found gone).
    pub(crate) at_unix_ns: u64,
    /// How long it had held, from its `ready` (milliseconds; 0 when not known).
    pub(crate) held_ms: u64,
    /// "exit 1", "killed by signal 9", "its process was gone".
    pub(crate) why: String,
}

/// Words of a record line: each escaped, so that any bytes fit in one word.
fn word(text: &str) -> String {
    let escaped = escape_octal(text.as_bytes());
    if escaped.is_empty() {
        "\\0".to_string()
    } else {
        escaped
    }
}

fn unword(word: &str) -> Option<String> {
    if word == "\\0" {
        return Some(String::new());
    }
    String::from_utf8(unescape_octal(word.as_bytes())).ok()
}

impl HoldNote {
    pub(crate) fn line(holds: &[HoldNote]) -> String {
        if holds.is_empty() {
            return "none".to_string();
        }
        holds
            .iter()
            .map(|h| {
                format!(
                    "{} {} {} {}",
                    word(&h.name),
                    h.pid,
                    h.pid_start,
                    word(&h.ready)
                )
            })
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(crate) fn parse_line(value: &str) -> Option<Vec<HoldNote>> {
        if value == "none" {
            return Some(Vec::new());
        }
        let words: Vec<&str> = value.split(' ').collect();
        if words.len() % 4 != 0 {
            return None;
        }
        words
            .chunks(4)
            .map(|w| {
                Some(HoldNote {
                    name: unword(w[0])?,
                    pid: w[1].parse().ok()?,
                    pid_start: w[2].parse().ok()?,
                    ready: unword(w[3])?,
                })
            })
            .collect()
    }
}

impl HoldBreakNote {
    /// When it ended, when known.
    pub(crate) fn ended_at(&self) -> Option<std::time::SystemTime> {
        (self.at_unix_ns > 0)
            .then(|| std::time::UNIX_EPOCH + std::time::Duration::from_nanos(self.at_unix_ns))
    }

    /// How long it had held, when known.
    pub(crate) fn held_for(&self) -> Option<std::time::Duration> {
        (self.held_ms > 0).then(|| std::time::Duration::from_millis(self.held_ms))
    }

    pub(crate) fn line(broken: Option<&HoldBreakNote>) -> String {
        broken.map_or("none".to_string(), |b| {
            format!(
                "{} {} {} {}",
                word(&b.name),
                b.at_unix_ns,
                b.held_ms,
                word(&b.why)
            )
        })
    }

    pub(crate) fn parse_line(value: &str) -> Option<Option<HoldBreakNote>> {
        if value == "none" {
            return Some(None);
        }
        let mut words = value.split(' ');
        let broken = HoldBreakNote {
            name: unword(words.next()?)?,
            at_unix_ns: words.next()?.parse().ok()?,
            held_ms: words.next()?.parse().ok()?,
            why: unword(words.next()?)?,
        };
        words.next().is_none().then_some(Some(broken))
    }
}
