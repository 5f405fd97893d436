//! From a path to its mount and superblock, through `/proc/self/mountinfo`.
//!
//! One freeze belongs to one superblock, so state is keyed by the superblock's
//! device number as mountinfo shows it (`sb->s_dev`), never by `stat()`'s
//! `st_dev`, which differs between btrfs subvolumes of one filesystem.

use std::ffi::OsStr;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;
use std::str::FromStr;

/// A superblock's device number, `major:minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Device {
    /// Major number.
    pub major: u32,
    /// Minor number.
    pub minor: u32,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.major, self.minor)
    }
}

impl FromStr for Device {
    type Err = ();
    fn from_str(s: &str) -> Result<Device, ()> {
        let (major, minor) = s.split_once(':').ok_or(())?;
        Ok(Device {
            major: major.parse().map_err(|_| ())?,
            minor: minor.parse().map_err(|_| ())?,
        })
    }
}

/// One line of `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountEntry {
    /// The mount id: mountinfo's field 1, or the unique id statmount took.
    pub mount_id: u64,
    /// The superblock's device (field 3).
    pub device: Device,
    /// The mount point (field 5), unescaped.
    pub mount_point: PathBuf,
    /// The filesystem type (first field after `-`).
    pub fs_type: String,
}

/// Undoes the kernel's octal escapes (`\040` space, `\011` tab, `\012`
/// newline, `\134` backslash). A backslash not followed by three octal
/// digits is kept as it is.
pub(crate) fn unescape_octal(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        if field[i] == b'\\' {
            let digits = field.get(i + 1..i + 4).unwrap_or_default();
            if digits.len() == 3 && digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                let value = digits.iter().fold(0u32, |v, d| v * 8 + u32::from(d - b'0'));
                if let Ok(byte) = u8::try_from(value) {
                    out.push(byte);
                    i += 4;
                    continue;
                }
            }
        }
        out.push(field[i]);
        i += 1;
    }
    out
}

/// Escapes bytes the way mountinfo does, for one-line text records: `\`,
/// whitespace, control characters and non-ASCII bytes become `\ooo`.
pub(crate) fn escape_octal(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for &b in bytes {
        if b == b'\\' || b <= b' ' || b >= 0x7f {
            out.push_str(&format!("\\{b:03o}"));
        } else {
            out.push(char::from(b));
        }
    }
    out
}

/// A mountinfo line with what the guard needs besides its [`MountEntry`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountLine {
    pub entry: MountEntry,
    /// The mount it is mounted on (field 2).
    pub parent_id: u64,
    /// Mounted read-only, or its superblock is (`ro` in either options).
    pub read_only: bool,
}

/// Parses one mountinfo line; `None` for a malformed one.
pub(crate) fn parse_mountinfo_line(line: &[u8]) -> Option<MountEntry> {
    parse_line(line, false).map(|l| l.entry)
}

/// Parses one mountinfo line, with its parent and whether it is read-only.
pub(crate) fn parse_mount_line(line: &[u8]) -> Option<MountLine> {
    parse_line(line, true)
}

/// `details`: also the parent and the options (the guard's), which every
/// other reader of the table does without.
fn parse_line(line: &[u8], details: bool) -> Option<MountLine> {
    let mut fields = line.split(|&b| b == b' ').filter(|f| !f.is_empty());
    let mount_id = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let parent = fields.next()?;
    let device = std::str::from_utf8(fields.next()?).ok()?.parse().ok()?;
    let _root = fields.next()?;
    let mount_point = unescape_octal(fields.next()?);
    let mount_options = fields.next()?;
    // Optional fields up to the "-" separator.
    fields.by_ref().find(|f| *f == b"-")?;
    let fs_type = String::from_utf8_lossy(&unescape_octal(fields.next()?)).into_owned();
    let (parent_id, read_only) = if details {
        let _source = fields.next();
        let super_options = fields.next().unwrap_or_default();
        let says_ro = |options: &[u8]| options.split(|&b| b == b',').any(|o| o == b"ro");
        (
            std::str::from_utf8(parent).ok()?.parse().ok()?,
            says_ro(mount_options) || says_ro(super_options),
        )
    } else {
        (0, false)
    };
    Some(MountLine {
        entry: MountEntry {
            mount_id,
            device,
            mount_point: PathBuf::from(OsStr::from_bytes(&mount_point)),
            fs_type,
        },
        parent_id,
        read_only,
    })
}

/// Every well-formed line of a mountinfo text.
pub(crate) fn parse_mountinfo(text: &[u8]) -> Vec<MountEntry> {
    text.split(|&b| b == b'\n')
        .filter_map(parse_mountinfo_line)
        .collect()
}

/// A mount's id as statx gave it: the unique 64-bit id (Linux 6.8, which
/// statmount takes), or the reusable id that mountinfo lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MountId {
    /// `STATX_MNT_ID_UNIQUE`.
    Unique(u64),
    /// `STATX_MNT_ID`, mountinfo's first field.
    Listed(u64),
}

/// The mount with this id: one statmount(2) call when the id is unique
/// (flat cost however many mounts there are), else a mountinfo scan.
pub(crate) fn describe(id: MountId) -> io::Result<MountEntry> {
    match id {
        MountId::Unique(unique) => {
            let m = crate::os::syscalls::statmount(unique)?;
            Ok(MountEntry {
                mount_id: unique,
                device: Device {
                    major: m.device.0,
                    minor: m.device.1,
                },
                mount_point: PathBuf::from(OsStr::from_bytes(&m.mount_point)),
                fs_type: String::from_utf8_lossy(&m.fs_type).into_owned(),
            })
        }
        MountId::Listed(listed) => MountTable::read()?.by_id(listed).cloned(),
    }
}

/// What a mount is a view of: its superblock's device and type. Both are
/// fixed for the mount's life (moving a mount changes its mount point, not
/// its superblock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Superblock {
    /// The superblock's device.
    pub device: Device,
    /// The filesystem type.
    pub fs_type: String,
}

/// How many mounts' superblocks [`superblock_of`] remembers.
const SUPERBLOCKS_REMEMBERED: usize = 256;

/// The superblock of mount `id`. A unique mount id (Linux 6.8) is never
/// given to another mount within a boot, and a mount never changes its
/// superblock, so the answer for one is remembered for the process's life:
/// it cannot go stale. A listed id is reused once its mount is gone: never
/// remembered.
pub(crate) fn superblock_of(id: MountId) -> io::Result<Superblock> {
    static REMEMBERED: std::sync::Mutex<Vec<(u64, Superblock)>> = std::sync::Mutex::new(Vec::new());
    let described = || {
        describe(id).map(|entry| Superblock {
            device: entry.device,
            fs_type: entry.fs_type,
        })
    };
    let MountId::Unique(unique) = id else {
        return described();
    };
    // try_lock, not a ForkSafe (os::fork lies above this module): a child
    // forked while another thread held it must not wait, only ask again.
    if let Ok(remembered) = REMEMBERED.try_lock() {
        if let Some((_, sb)) = remembered.iter().find(|(u, _)| *u == unique) {
            return Ok(sb.clone());
        }
    }
    let sb = described()?;
    if let Ok(mut remembered) = REMEMBERED.try_lock() {
        if remembered.len() >= SUPERBLOCKS_REMEMBERED {
            remembered.clear();
        }
        remembered.push((unique, sb.clone()));
    }
    Ok(sb)
}

/// True for a filesystem type that lives on a block device (listed without
/// `nodev` in `/proc/filesystems`), FUSE's excepted: the only kind another
/// tool can have frozen, and never a network or pseudo filesystem, which a
/// probe must not touch.
pub(crate) fn on_block_device(fs_type: &str) -> bool {
    if fs_type.is_empty() || fs_type.starts_with("fuse") {
        return false;
    }
    // Whether a type lives on a block device is fixed when it registers, so
    // a type once listed is known for good; a type not listed yet (a module
    // loaded since) sends us back to the kernel's list, never to a guess.
    static LISTED: std::sync::Mutex<Vec<(String, bool)>> = std::sync::Mutex::new(Vec::new());
    let known = |listed: &[(String, bool)]| {
        listed
            .iter()
            .find(|(name, _)| name == fs_type)
            .map(|&(_, on_block)| on_block)
    };
    // try_lock: a child forked while another thread held it must not wait.
    if let Ok(listed) = LISTED.try_lock() {
        if let Some(on_block) = known(&listed) {
            return on_block;
        }
    }
    let text = crate::os::small_file::read_proc("/proc/filesystems").unwrap_or_default();
    let fresh: Vec<(String, bool)> = String::from_utf8_lossy(&text)
        .lines()
        .map(|line| match line.strip_prefix("nodev") {
            Some(name) => (name.trim().to_string(), false),
            None => (line.trim().to_string(), true),
        })
        .collect();
    let on_block = known(&fresh).unwrap_or(false);
    if let Ok(mut listed) = LISTED.try_lock() {
        *listed = fresh;
    }
    on_block
}

/// A snapshot of this process's mount table.
pub(crate) struct MountTable {
    entries: Vec<MountEntry>,
}

impl MountTable {
    /// Reads `/proc/self/mountinfo`.
    pub(crate) fn read() -> io::Result<MountTable> {
        let text = std::fs::read("/proc/self/mountinfo")?;
        Ok(MountTable {
            entries: parse_mountinfo(&text),
        })
    }

    /// Every mount, in mountinfo's order.
    pub(crate) fn entries(&self) -> &[MountEntry] {
        &self.entries
    }

    /// The mount with this id; `ENOENT` if it went away meanwhile.
    pub(crate) fn by_id(&self, mount_id: u64) -> io::Result<&MountEntry> {
        self.entries
            .iter()
            .find(|e| e.mount_id == mount_id)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unescape_octal_decodes_space_tab_newline_backslash() {
        assert_eq!(unescape_octal(br"a\040b\011c\012d\134e"), b"a b\tc\nd\\e");
    }

    #[test]
    fn unescape_octal_keeps_a_backslash_without_three_octal_digits() {
        assert_eq!(unescape_octal(br"a\04"), br"a\04");
        assert_eq!(unescape_octal(br"a\089"), br"a\089");
        assert_eq!(unescape_octal(br"end\"), br"end\");
        assert_eq!(unescape_octal(br"\777"), br"\777");
    }

    #[test]
    fn escape_then_unescape_round_trips_every_byte() {
        let all: Vec<u8> = (0..=255u8).collect();
        let escaped = escape_octal(&all);
        assert!(!escaped.contains(['\n', ' ', '\t']));
        assert_eq!(unescape_octal(escaped.as_bytes()), all);
    }

    #[test]
    fn parses_a_line_with_optional_fields_and_an_escaped_mount_point() {
        let line = br"36 35 98:0 /mnt1 /mnt/my\040disk\011x rw,noatime master:1 shared:7 - ext3 /dev/root rw,errors=continue";
        let e = parse_mountinfo_line(line).unwrap();
        assert_eq!(e.mount_id, 36);
        assert_eq!(
            e.device,
            Device {
                major: 98,
                minor: 0
            }
        );
        assert_eq!(e.mount_point, PathBuf::from("/mnt/my disk\tx"));
        assert_eq!(e.fs_type, "ext3");
    }

    #[test]
    fn parses_a_mount_point_with_newline_and_backslash() {
        let line = br"40 1 0:52 / /tmp/a\012b\134c rw - btrfs /dev/loop3 rw";
        let e = parse_mountinfo_line(line).unwrap();
        assert_eq!(e.mount_point.as_os_str().as_bytes(), b"/tmp/a\nb\\c");
        assert_eq!(e.device.to_string(), "0:52");
    }

    #[test]
    fn a_mount_is_read_only_when_its_mount_or_its_superblock_is() {
        let rw =
            parse_mount_line(b"36 35 8:1 / /a rw,noatime - ext4 /dev/sda1 rw,errors=remount-ro")
                .unwrap();
        assert!(!rw.read_only);
        assert_eq!(rw.parent_id, 35);
        let mount_ro = parse_mount_line(b"37 35 8:1 / /b ro,relatime - ext4 /dev/sda1 rw").unwrap();
        assert!(mount_ro.read_only);
        let super_ro =
            parse_mount_line(b"38 35 8:2 / /c rw shared:3 - xfs /dev/sda2 ro,attr2").unwrap();
        assert!(super_ro.read_only);
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let text = b"garbage\n27 1 254:0 / / rw - ext4 /dev/vda rw\n\n1 2 x:y / / rw - ext4 a b\n3 4 1:2 / /x rw no-separator\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].mount_point, PathBuf::from("/"));
    }

    #[test]
    fn statmount_and_mountinfo_describe_the_root_mount_alike() {
        let facts = crate::os::target::identity_of("/").unwrap();
        let fast = describe(facts.mount_id).unwrap();
        let table = MountTable::read().unwrap();
        let listed = table
            .entries
            .iter()
            .find(|e| e.mount_point == fast.mount_point && e.device == fast.device)
            .expect("statmount's answer is in mountinfo");
        assert_eq!(listed.fs_type, fast.fs_type);
        assert!(
            matches!(facts.mount_id, MountId::Unique(_)),
            "this kernel has statmount"
        );
    }

    #[test]
    fn only_filesystems_on_a_block_device_are_probed() {
        for never in [
            "",
            "tmpfs",
            "proc",
            "sysfs",
            "nfs",
            "nfs4",
            "cifs",
            "fuse.sshfs",
            "fuseblk",
        ] {
            assert!(!on_block_device(never), "{never:?} would be probed");
        }
        let listed = std::fs::read_to_string("/proc/filesystems").unwrap();
        let on_disk = listed
            .lines()
            .map(str::trim)
            .find(|l| !l.starts_with("nodev") && *l != "fuseblk")
            .expect("this kernel lists a block filesystem");
        assert!(on_block_device(on_disk), "{on_disk}");
    }

    #[test]
    fn device_parses_and_prints_major_minor() {
        let d: Device = "259:12".parse().unwrap();
        assert_eq!(
            d,
            Device {
                major: 259,
                minor: 12
            }
        );
        assert_eq!(d.to_string(), "259:12");
        assert!("259".parse::<Device>().is_err());
        assert!("a:1".parse::<Device>().is_err());
    }
}
