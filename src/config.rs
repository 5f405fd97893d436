//! The default timeout, from the `vfs:` stanza of `/etc/sysconfigtab`.
//!
//! The file is read at every freeze that asks for the default, so an edit
//! takes effect for the next freeze without restarting anything.

use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::os::syscalls;

/// Where the default timeout is read from.
pub const SYSCONFIGTAB: &str = "/etc/sysconfigtab";
/// The environment variable that overrides [`SYSCONFIGTAB`] (ignored under `AT_SECURE`).
pub const SYSCONFIGTAB_ENV: &str = "FREEZEFS_SYSCONFIGTAB";
/// The default when the file says nothing usable.
pub const FALLBACK_SECONDS: u32 = 60;
/// The longest deadline a freeze of `/`, `/usr` or `/var` gets under the
/// shim when the file says nothing usable: AdvFS's own default timeout,
/// longer than a hypervisor's snapshot of several disks takes, short enough
/// that a host that never thaws stops the guest for a minute, not for ever.
pub const PROTECTED_MAX_FALLBACK_SECONDS: u32 = 60;
/// How long one hook run may last when the file says nothing usable: a
/// database's checkpoint takes seconds; a hook stuck for longer than this
/// holds a backup up for nothing.
pub const HOOK_FALLBACK_SECONDS: u32 = 30;
/// The grace a hold hook has to exit after `thaw REASON`, when
/// `freezefs_hold_grace` is not set: then its process group is killed.
pub const HOLD_GRACE_FALLBACK_SECONDS: u32 = 5;
/// A larger file is not read at all: it cannot be a real sysconfigtab.
const MAX_FILE_BYTES: u64 = 1 << 20;

/// The default timeout a freeze with timeout 0 gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DefaultTimeout {
    /// Thaw after this many seconds.
    Seconds(u32),
    /// No timeout: frozen until thawed (a negative value in the file).
    Never,
}

/// The sysconfigtab path in force: the override, or `/etc/sysconfigtab`.
pub(crate) fn sysconfigtab_path() -> PathBuf {
    syscalls::secure_env(SYSCONFIGTAB_ENV)
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(SYSCONFIGTAB))
}

/// Reads the default timeout from `path`. A missing, unreadable, non-regular
/// or oversized file, a missing stanza or attribute, or a bad value gives 60 s.
pub(crate) fn default_timeout(path: &Path) -> DefaultTimeout {
    read_file(path)
        .ok()
        .map(|text| default_timeout_from(&text))
        .unwrap_or(DefaultTimeout::Seconds(FALLBACK_SECONDS))
}

/// Why `path` gives a freeze that asks for the default timeout 60 s rather
/// than what the admin wrote there: a file that exists but cannot be used,
/// or a `freezefs_default_timeout` that is not a whole number of seconds.
/// None when it is usable, or absent (60 s, as documented).
pub(crate) fn default_timeout_problem(path: &Path) -> Option<String> {
    let text = match read_file(path) {
        Ok(text) => text,
        Err(Unusable::Missing) => return None,
        Err(why) => return Some(format!("{}: {why}", path.display())),
    };
    let value = attribute(&text, "vfs", "freezefs_default_timeout")?;
    parse_seconds(&value).is_none().then(|| {
        format!(
            "{}: freezefs_default_timeout = {value} is not a whole number of seconds",
            path.display()
        )
    })
}

/// The cap on a freeze of `/`, `/usr` or `/var` under the shim:
/// `freezefs_protected_max_timeout` in the `vfs:` stanza, in seconds. The
/// cap is always finite: a missing, zero, negative or bad value gives
/// [`PROTECTED_MAX_FALLBACK_SECONDS`].
pub(crate) fn protected_max_timeout(path: &Path) -> u32 {
    positive_seconds(
        path,
        "freezefs_protected_max_timeout",
        PROTECTED_MAX_FALLBACK_SECONDS,
    )
}

/// The time limit of one hook run: `freezefs_hook_timeout` in the `vfs:`
/// stanza, in seconds; a missing, zero, negative or bad value gives
/// [`HOOK_FALLBACK_SECONDS`].
pub(crate) fn hook_timeout(path: &Path) -> u32 {
    positive_seconds(path, "freezefs_hook_timeout", HOOK_FALLBACK_SECONDS)
}

/// How long a hold hook has to let go of its lock once told that its
/// freeze ended: `freezefs_hold_grace` in the `vfs:` stanza, in seconds;
/// a missing, zero, negative or bad value gives [`HOLD_GRACE_FALLBACK_SECONDS`].
pub(crate) fn hold_grace(path: &Path) -> u32 {
    positive_seconds(path, "freezefs_hold_grace", HOLD_GRACE_FALLBACK_SECONDS)
}

/// A `vfs:` attribute of `path` that must be a positive number of
/// seconds, else `fallback`.
fn positive_seconds(path: &Path, attr: &str, fallback: u32) -> u32 {
    read_file(path).ok().map_or(fallback, |text| {
        positive_seconds_from(&text, attr, fallback)
    })
}

/// [`positive_seconds`] of a sysconfigtab text.
pub(crate) fn positive_seconds_from(text: &[u8], attr: &str, fallback: u32) -> u32 {
    match attribute(text, "vfs", attr).and_then(|v| parse_seconds(&v)) {
        Some(n) if n > 0 => n as u32,
        _ => fallback,
    }
}

/// Why a sysconfigtab file is not read.
#[derive(Debug)]
enum Unusable {
    Missing,
    Unreadable(std::io::Error),
    NotRegular,
    TooLarge,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unusable::Missing => f.write_str("no such file"),
            Unusable::Unreadable(e) => write!(f, "cannot be read: {e}"),
            Unusable::NotRegular => f.write_str("not a regular file"),
            Unusable::TooLarge => write!(f, "larger than {MAX_FILE_BYTES} bytes: not read"),
        }
    }
}

/// The text of the sysconfigtab file at `path`, when it can be used.
pub(crate) fn text(path: &Path) -> Option<Vec<u8>> {
    read_file(path).ok()
}

/// Reads a regular file of at most [`MAX_FILE_BYTES`]. O_NONBLOCK keeps a FIFO
/// from blocking the open; the type check then refuses it.
fn read_file(path: &Path) -> Result<Vec<u8>, Unusable> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Unusable::Missing,
            _ => Unusable::Unreadable(e),
        })?;
    let meta = file.metadata().map_err(Unusable::Unreadable)?;
    if !meta.file_type().is_file() || meta.file_type().is_fifo() {
        return Err(Unusable::NotRegular);
    }
    if meta.len() > MAX_FILE_BYTES {
        return Err(Unusable::TooLarge);
    }
    let expected = usize::try_from(meta.len()).unwrap_or(0);
    let text = crate::os::small_file::read_fd(&file, expected, MAX_FILE_BYTES as usize + 1)
        .map_err(Unusable::Unreadable)?;
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(Unusable::TooLarge);
    }
    Ok(text)
}

/// The default timeout a sysconfigtab text gives.
pub(crate) fn default_timeout_from(text: &[u8]) -> DefaultTimeout {
    match attribute(text, "vfs", "freezefs_default_timeout").and_then(|v| parse_seconds(&v)) {
        Some(n) if n < 0 => DefaultTimeout::Never,
        Some(n) if n > 0 => DefaultTimeout::Seconds(n as u32),
        _ => DefaultTimeout::Seconds(FALLBACK_SECONDS),
    }
}

/// A decimal integer that fits a C `int`, with an optional sign. Anything
/// else, a list of several values included, is not a timeout.
pub(crate) fn parse_seconds(value: &str) -> Option<i32> {
    let digits = value.strip_prefix(['+', '-']).unwrap_or(value);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    value.parse::<i32>().ok()
}

/// The value of `attr` in stanza `subsystem`, stripped of comments and
/// surrounding blanks. When a stanza or attribute repeats, the last wins.
///
/// Format: a line `name:` at the left margin starts a stanza; indented
/// `attribute = value[, value...]` lines belong to it; `#` starts a comment;
/// blank lines are ignored; CRLF line ends are accepted.
pub(crate) fn attribute(text: &[u8], subsystem: &str, attr: &str) -> Option<String> {
    let text = String::from_utf8_lossy(text);
    let mut in_stanza = false;
    let mut found = None;
    for raw in text.lines() {
        let line = raw
            .split('#')
            .next()
            .unwrap_or("")
            .trim_end_matches(['\r', ' ', '\t']);
        if line.trim().is_empty() {
            continue;
        }
        let indented = line.starts_with([' ', '\t']);
        if let Some((key, value)) = line.split_once('=') {
            if in_stanza && key.trim() == attr {
                found = Some(value.trim().to_string());
            }
        } else if !indented && line.ends_with(':') {
            in_stanza = line[..line.len() - 1].trim() == subsystem;
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use DefaultTimeout::{Never, Seconds};

    fn t(text: &str) -> DefaultTimeout {
        default_timeout_from(text.as_bytes())
    }

    fn cap(text: &str) -> u32 {
        positive_seconds_from(
            text.as_bytes(),
            "freezefs_protected_max_timeout",
            PROTECTED_MAX_FALLBACK_SECONDS,
        )
    }

    #[test]
    fn the_protected_cap_is_read_from_the_vfs_stanza() {
        assert_eq!(cap("vfs:\n\tfreezefs_protected_max_timeout = 15\n"), 15);
        assert_eq!(
            cap("vfs:\n\tfreezefs_default_timeout = 5\n\tfreezefs_protected_max_timeout = 7 # s\n"),
            7
        );
    }

    #[test]
    fn the_protected_cap_is_always_finite() {
        for text in [
            "",
            "vfs:\n\tfreezefs_protected_max_timeout = -1\n",
            "vfs:\n\tfreezefs_protected_max_timeout = 0\n",
            "vfs:\n\tfreezefs_protected_max_timeout = soon\n",
            "vfs:\n\tfreezefs_protected_max_timeout = 99999999999\n",
            "other:\n\tfreezefs_protected_max_timeout = 5\n",
        ] {
            assert_eq!(cap(text), PROTECTED_MAX_FALLBACK_SECONDS, "{text:?}");
        }
    }

    #[test]
    fn reads_the_attribute_from_the_vfs_stanza() {
        assert_eq!(t("vfs:\n\tfreezefs_default_timeout = 120\n"), Seconds(120));
    }

    #[test]
    fn spaces_for_indent_and_no_blanks_around_equals_are_accepted() {
        assert_eq!(t("vfs:\n    freezefs_default_timeout=7\n"), Seconds(7));
    }

    #[test]
    fn empty_text_gives_60() {
        assert_eq!(t(""), Seconds(60));
    }

    #[test]
    fn missing_stanza_gives_60() {
        assert_eq!(t("ipc:\n\tfreezefs_default_timeout = 5\n"), Seconds(60));
    }

    #[test]
    fn missing_attribute_gives_60() {
        assert_eq!(t("vfs:\n\tname_cache_size = 1024\n"), Seconds(60));
    }

    #[test]
    fn zero_gives_60() {
        assert_eq!(t("vfs:\n\tfreezefs_default_timeout = 0\n"), Seconds(60));
    }

    #[test]
    fn negative_means_no_timeout() {
        assert_eq!(t("vfs:\n\tfreezefs_default_timeout = -1\n"), Never);
        assert_eq!(t("vfs:\n\tfreezefs_default_timeout = -2147483648\n"), Never);
    }

    #[test]
    fn non_integers_give_60() {
        for bad in [
            "abc",
            "12abc",
            "1.5",
            "0x10",
            "",
            "- 5",
            "+",
            "9999999999",
            "2147483648",
        ] {
            let text = format!("vfs:\n\tfreezefs_default_timeout = {bad}\n");
            assert_eq!(t(&text), Seconds(60), "value {bad:?}");
        }
    }

    #[test]
    fn largest_int_is_accepted() {
        assert_eq!(
            t("vfs:\n\tfreezefs_default_timeout = 2147483647\n"),
            Seconds(i32::MAX as u32)
        );
        assert_eq!(t("vfs:\n\tfreezefs_default_timeout = +30\n"), Seconds(30));
    }

    #[test]
    fn a_list_of_values_is_not_a_timeout() {
        assert_eq!(
            t("vfs:\n\tfreezefs_default_timeout = 10, 20\n"),
            Seconds(60)
        );
    }

    #[test]
    fn comma_separated_values_of_other_attributes_do_not_disturb() {
        let text = "vfs:\n\tpath_list = /a, /b, /c\n\tfreezefs_default_timeout = 9\n";
        assert_eq!(t(text), Seconds(9));
    }

    #[test]
    fn comments_and_blank_lines_are_ignored() {
        let text = "# sysconfigtab\n\n# vfs:\nvfs:   # the vfs subsystem\n\n\t# freezefs_default_timeout = 1\n\tfreezefs_default_timeout = 33 # seconds\n";
        assert_eq!(t(text), Seconds(33));
    }

    #[test]
    fn the_attribute_in_another_stanza_after_vfs_is_not_read() {
        let text = "vfs:\n\tfreezefs_default_timeout = 11\nipc:\n\tfreezefs_default_timeout = 22\n";
        assert_eq!(t(text), Seconds(11));
    }

    #[test]
    fn several_subsystems_with_vfs_in_the_middle() {
        let text = "generic:\n\tmemberid = 1\n\nvfs:\n\tbufcache = 3\n\tfreezefs_default_timeout = 44\n\nproc:\n\tmax_proc_per_user = 256\n";
        assert_eq!(t(text), Seconds(44));
    }

    #[test]
    fn the_last_occurrence_wins() {
        let text = "vfs:\n\tfreezefs_default_timeout = 1\nvfs:\n\tfreezefs_default_timeout = 2\n";
        assert_eq!(t(text), Seconds(2));
    }

    #[test]
    fn crlf_line_ends_are_accepted() {
        assert_eq!(
            t("vfs:\r\n\tfreezefs_default_timeout = 15\r\n"),
            Seconds(15)
        );
    }

    #[test]
    fn stanza_names_are_exact_and_case_sensitive() {
        assert_eq!(t("VFS:\n\tfreezefs_default_timeout = 5\n"), Seconds(60));
        assert_eq!(t("vfs2:\n\tfreezefs_default_timeout = 5\n"), Seconds(60));
        assert_eq!(t("vfs :\n\tfreezefs_default_timeout = 5\n"), Seconds(5));
    }

    #[test]
    fn binary_garbage_gives_60() {
        let mut text = vec![0u8, 0xff, 0xfe, b'\n', b':', b'='];
        text.extend_from_slice(b"vfs:\n\tfreezefs_default_timeout = \xff\xfe\n");
        assert_eq!(default_timeout_from(&text), Seconds(60));
    }

    #[test]
    fn an_indented_name_colon_line_does_not_start_a_stanza() {
        let text = "ipc:\n\tvfs:\n\tfreezefs_default_timeout = 5\n";
        assert_eq!(t(text), Seconds(60));
    }

    #[test]
    fn missing_file_gives_60() {
        assert_eq!(
            default_timeout(Path::new("/nonexistent/sysconfigtab")),
            Seconds(60)
        );
    }

    #[test]
    fn a_directory_gives_60() {
        assert_eq!(default_timeout(Path::new("/")), Seconds(60));
    }
}
