//! `statx` that asks for no timestamp, for what freezefs checks and then
//! changes: its state directory and the files in it.
//!
//! Since Linux 6.13, on filesystems with multigrain timestamps (tmpfs,
//! ext4, xfs, btrfs), a file whose ctime or mtime was asked for is marked
//! queried, and its next change takes a fine-grained timestamp. That also
//! advances the floor every later coarse timestamp reads, on every
//! filesystem: a loop device's backing file then gets a new mtime at its
//! next write, and the flush behind each FIFREEZE and FITHAW of a
//! loop-mounted filesystem commits that inode too, measured at 35-50 us
//! each. `fstat` asks for every timestamp; nothing here needs one.

use std::os::fd::AsFd;

use rustix::fs::{AtFlags, Statx, StatxFlags};

/// Everything the checks read: kind and permissions, owner, links,
/// identity (device and inode come with every answer) and size.
const WANTED: StatxFlags = StatxFlags::TYPE
    .union(StatxFlags::MODE)
    .union(StatxFlags::UID)
    .union(StatxFlags::NLINK)
    .union(StatxFlags::INO)
    .union(StatxFlags::SIZE);

/// The file `fd` is open on.
pub(crate) fn of_fd<Fd: AsFd>(fd: Fd) -> rustix::io::Result<Statx> {
    rustix::fs::statx(fd, c"", AtFlags::EMPTY_PATH, WANTED)
}

/// The file `name` in `dir`, not followed if a symlink.
pub(crate) fn at<Fd: AsFd, P: rustix::path::Arg>(dir: Fd, name: P) -> rustix::io::Result<Statx> {
    rustix::fs::statx(dir, name, AtFlags::SYMLINK_NOFOLLOW, WANTED)
}

/// The same inode: device and inode number.
pub(crate) fn same_inode(a: &Statx, b: &Statx) -> bool {
    (a.stx_dev_major, a.stx_dev_minor, a.stx_ino) == (b.stx_dev_major, b.stx_dev_minor, b.stx_ino)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_untimed_stat_gives_what_the_checks_read_without_asking_for_a_time() {
        let dir = std::env::temp_dir();
        let fd = rustix::fs::open(
            &dir,
            rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY,
            rustix::fs::Mode::empty(),
        )
        .unwrap();
        let st = of_fd(&fd).unwrap();
        assert_eq!(u32::from(st.stx_mode) & libc::S_IFMT, libc::S_IFDIR);
        assert!(st.stx_mask & WANTED.bits() == WANTED.bits());
        let mtime_or_ctime = (StatxFlags::MTIME | StatxFlags::CTIME).bits();
        // The kernel may fill in more than asked, but must not need to.
        assert!(WANTED.bits() & mtime_or_ctime == 0);
        let via_dir = at(rustix::fs::CWD, dir.as_path()).unwrap();
        assert!(same_inode(&st, &via_dir));
    }
}
