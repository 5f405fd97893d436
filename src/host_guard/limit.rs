//! `freezefs_foreign_max_timeout`: how long another tool's freeze may last
//! before the guard thaws it, from the `vfs:` stanza of the sysconfigtab.

use std::path::Path;

use crate::config;

/// The limit when the file says nothing usable: ten minutes, longer than
/// any snapshot takes, short enough that a forgotten freeze is an incident
/// rather than an outage.
pub const FOREIGN_MAX_FALLBACK_SECONDS: u32 = 600;

/// The limit a sysconfigtab text gives: `None` (0 or negative) means the
/// guard only reports; missing or bad gives the fallback.
pub(crate) fn limit_from(text: &[u8]) -> Option<u32> {
    match config::attribute(text, "vfs", "freezefs_foreign_max_timeout")
        .and_then(|v| config::parse_seconds(&v))
    {
        Some(n) if n > 0 => Some(n as u32),
        Some(_) => None,
        None => Some(FOREIGN_MAX_FALLBACK_SECONDS),
    }
}

/// The limit the file at `path` gives now.
pub(crate) fn read(path: &Path) -> Option<u32> {
    config::text(path).map_or(Some(FOREIGN_MAX_FALLBACK_SECONDS), |text| limit_from(&text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_is_read_from_the_vfs_stanza() {
        assert_eq!(
            limit_from(b"vfs:\n\tfreezefs_foreign_max_timeout = 3\n"),
            Some(3)
        );
    }

    #[test]
    fn zero_or_negative_turns_the_thaws_off() {
        assert_eq!(
            limit_from(b"vfs:\n\tfreezefs_foreign_max_timeout = 0\n"),
            None
        );
        assert_eq!(
            limit_from(b"vfs:\n\tfreezefs_foreign_max_timeout = -1\n"),
            None
        );
    }

    #[test]
    fn missing_or_bad_gives_ten_minutes() {
        for text in [
            &b""[..],
            b"vfs:\n",
            b"vfs:\n\tfreezefs_foreign_max_timeout = soon\n",
        ] {
            assert_eq!(limit_from(text), Some(600), "{text:?}");
        }
    }
}
