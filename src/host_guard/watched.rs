//! Which filesystems the guard watches, from the mount table: one mount
//! per superblock, of a type Linux can freeze, writable, and reached
//! without a lookup through a network or FUSE filesystem (whose server
//! could make the lookup hang). Every other mount is never touched.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::os::mounts::{Device, MountLine};

/// The local filesystems whose drivers can freeze (a `freeze_fs` or
/// `freeze_super` of their own). Cluster filesystems (gfs2, ocfs2) are
/// left out: their freeze may be another node's, for the whole cluster.
pub(crate) const FREEZABLE_TYPES: [&str; 10] = [
    "ext2", "ext3", "ext4", "xfs", "btrfs", "f2fs", "jfs", "nilfs2", "reiserfs", "bcachefs",
];

/// Filesystems a path lookup may wait on a server for.
const REMOTE_TYPES: [&str; 14] = [
    "nfs",
    "nfs4",
    "cifs",
    "smb3",
    "smbfs",
    "ceph",
    "9p",
    "afs",
    "glusterfs",
    "lustre",
    "virtiofs",
    "davfs",
    "gfs2",
    "ocfs2",
];

/// One watched filesystem: the mount the guard reaches it through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Watched {
    pub(crate) device: Device,
    /// mountinfo's id of that mount (checked on the open directory).
    pub(crate) mount_id: u64,
    pub(crate) mount_point: PathBuf,
    pub(crate) fs_type: String,
}

fn remote(fs_type: &str) -> bool {
    fs_type.starts_with("fuse") || REMOTE_TYPES.contains(&fs_type)
}

/// The filesystems to watch, in mount table order: for each superblock of
/// a freezable type, its first writable mount whose every ancestor is
/// local. Mounts whose mount point a later mount covers are kept: the
/// open of the directory tells, by its mount id.
pub(crate) fn choose(lines: &[MountLine]) -> Vec<Watched> {
    let by_id: HashMap<u64, &MountLine> = lines.iter().map(|l| (l.entry.mount_id, l)).collect();
    let reached_locally = |line: &MountLine| {
        let mut parent = line.parent_id;
        // A cycle cannot be in a real table; the bound keeps a forged one finite.
        for _ in 0..by_id.len() {
            match by_id.get(&parent) {
                Some(up) if up.entry.mount_id == parent && remote(&up.entry.fs_type) => {
                    return false;
                }
                Some(up) if up.parent_id != parent => parent = up.parent_id,
                _ => return true,
            }
        }
        true
    };
    let mut chosen: Vec<Watched> = Vec::new();
    for line in lines {
        let entry = &line.entry;
        if line.read_only
            || !FREEZABLE_TYPES.contains(&entry.fs_type.as_str())
            || chosen.iter().any(|w| w.device == entry.device)
            || !reached_locally(line)
        {
            continue;
        }
        chosen.push(Watched {
            device: entry.device,
            mount_id: entry.mount_id,
            mount_point: entry.mount_point.clone(),
            fs_type: entry.fs_type.clone(),
        });
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::mounts::parse_mount_line;

    fn table(text: &str) -> Vec<MountLine> {
        text.lines()
            .filter_map(|l| parse_mount_line(l.as_bytes()))
            .collect()
    }

    fn points(text: &str) -> Vec<String> {
        choose(&table(text))
            .into_iter()
            .map(|w| w.mount_point.display().to_string())
            .collect()
    }

    #[test]
    fn only_freezable_local_types_are_watched() {
        let text = "\
1 0 254:1 / / rw - ext4 /dev/vda rw
2 1 0:20 / /proc rw - proc proc rw
3 1 0:21 / /run rw - tmpfs tmpfs rw
4 1 8:1 / /boot/efi rw - vfat /dev/sda1 rw
5 1 0:40 / /srv/remote rw - nfs4 srv:/x rw
6 1 0:41 / /home/u/fuse rw - fuse.sshfs u@h: rw
7 1 7:0 / /data rw - xfs /dev/loop0 rw
8 1 0:42 / /pool rw - btrfs /dev/loop1 rw";
        assert_eq!(points(text), ["/", "/data", "/pool"]);
    }

    #[test]
    fn read_only_mounts_and_superblocks_are_not_watched() {
        let text = "\
1 0 254:1 / / rw - ext4 /dev/vda rw
2 1 7:0 / /ro-mount ro - ext4 /dev/loop0 rw
3 1 7:1 / /ro-super rw - xfs /dev/loop1 ro";
        assert_eq!(points(text), ["/"]);
    }

    #[test]
    fn a_superblock_is_watched_once_through_its_first_writable_mount() {
        let text = "\
1 0 254:1 / / rw - ext4 /dev/vda rw
2 1 0:42 /a /ro-view ro - btrfs /dev/loop1 rw
3 1 0:42 /b /sub-b rw - btrfs /dev/loop1 rw
4 1 0:42 /c /sub-c rw - btrfs /dev/loop1 rw";
        assert_eq!(points(text), ["/", "/sub-b"]);
    }

    #[test]
    fn a_mount_reached_through_a_network_or_fuse_filesystem_is_not_watched() {
        let text = "\
1 0 254:1 / / rw - ext4 /dev/vda rw
5 1 0:40 / /net rw - nfs srv:/x rw
9 5 7:0 / /net/disk rw - ext4 /dev/loop0 rw
6 1 0:41 / /fuse rw - fuse.sshfs u@h: rw
10 6 7:1 / /fuse/deeper/disk rw - xfs /dev/loop1 rw
11 1 7:2 / /local rw - xfs /dev/loop2 rw";
        assert_eq!(points(text), ["/", "/local"]);
    }

    #[test]
    fn a_forged_cycle_of_parents_ends() {
        let text = "\
1 2 7:0 / /a rw - ext4 /dev/loop0 rw
2 1 7:1 / /b rw - ext4 /dev/loop1 rw";
        assert_eq!(points(text), ["/a", "/b"]);
    }
}
