//! Small files read whole in as few system calls as their kind allows.
//!
//! `std`'s `read_to_end` starts with 32-byte probe reads when it has no size
//! hint, and `/proc` files report a size of 0: a 400-byte file took six
//! reads. Here the buffer is sized up front and a short read ends the file:
//! true of a regular file nobody writes (records are written whole, then
//! renamed into place) and of a `/proc` file the kernel prints in one piece
//! (`single_open`: `stat`, `wchan`, `meminfo`, `filesystems`, sysctls).

use std::io;
use std::os::fd::AsFd;

use rustix::buffer::spare_capacity;
use rustix::fs::{CWD, Mode, OFlags};
use rustix::io::Errno;

/// What a `/proc` file of one piece is read with: larger than any this
/// crate reads (`/proc/meminfo` is under 2 KiB), so that one read takes it.
const PROC_BUFFER: usize = 4096;

/// The most a `/proc` file is read of.
const PROC_LIMIT: usize = 64 * 1024;

/// Reads `fd` to its end, at most `limit` bytes, into a buffer of
/// `expected + 1` bytes at first: a file of the expected size takes one read.
pub(crate) fn read_fd<Fd: AsFd>(fd: Fd, expected: usize, limit: usize) -> io::Result<Vec<u8>> {
    let mut buf: Vec<u8> = Vec::with_capacity(expected.saturating_add(1).clamp(1, limit.max(1)));
    while buf.len() < limit {
        if buf.len() == buf.capacity() {
            buf.reserve_exact(buf.capacity().min(limit - buf.len()));
        }
        let asked = buf.capacity() - buf.len();
        match rustix::io::read(&fd, spare_capacity(&mut buf)) {
            Ok(n) if n < asked => break,
            Ok(_) => {}
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    buf.truncate(limit);
    Ok(buf)
}

/// Reads a `/proc` (or `/sys`) file printed in one piece: open, one read,
/// close.
pub(crate) fn read_proc(path: &str) -> io::Result<Vec<u8>> {
    let fd = rustix::fs::openat(CWD, path, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty())?;
    read_fd(&fd, PROC_BUFFER - 1, PROC_LIMIT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proc_file_reads_whole() {
        let text = read_proc("/proc/self/stat").unwrap();
        let via_std = std::fs::read("/proc/self/stat").unwrap();
        // Times move between the two reads; the pid and name do not.
        assert_eq!(
            text.split(|&b| b == b')').next(),
            via_std.split(|&b| b == b')').next()
        );
        assert_eq!(text.last(), Some(&b'\n'));
    }

    #[test]
    fn a_file_larger_than_expected_reads_whole() {
        let dir = std::env::temp_dir().join(format!("small-file-{}", std::process::id()));
        std::fs::write(&dir, vec![b'x'; 10_000]).unwrap();
        let fd = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let read = read_fd(&fd, 10, 1 << 20).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read.len(), 10_000);
    }

    #[test]
    fn a_file_is_read_up_to_the_limit_only() {
        let dir = std::env::temp_dir().join(format!("small-file-limit-{}", std::process::id()));
        std::fs::write(&dir, vec![b'x'; 10_000]).unwrap();
        let fd = rustix::fs::open(&dir, OFlags::RDONLY | OFlags::CLOEXEC, Mode::empty()).unwrap();
        let read = read_fd(&fd, 0, 5000).unwrap();
        std::fs::remove_file(&dir).unwrap();
        assert_eq!(read.len(), 5000);
    }
}
