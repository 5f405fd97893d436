//! Messages with an fd attached (`SCM_RIGHTS`) on a connected Unix socket:
//! how a client hands the holder a mount, and how a waiter gets its
//! directory.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::io::Errno;
use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, ReturnFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags,
};

/// Sends `bytes` with `fds` attached (at most two), never raising SIGPIPE.
pub(crate) fn send_with_fds<Fd: AsFd>(
    socket: Fd,
    bytes: &[u8],
    fds: &[BorrowedFd<'_>],
) -> io::Result<()> {
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
    let mut control = SendAncillaryBuffer::new(&mut space);
    if !fds.is_empty() && !control.push(SendAncillaryMessage::ScmRights(fds)) {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    rustix::net::sendmsg(
        socket,
        &[IoSlice::new(bytes)],
        &mut control,
        SendFlags::NOSIGNAL,
    )?;
    Ok(())
}

/// Receives one message into `buf`, and the first fd that came with it
/// (close-on-exec; any others are closed). `(0, None)` at the end of the
/// stream. A message longer than `buf` is refused whole (`EMSGSIZE`),
/// never cut short.
pub(crate) fn recv_with_fd<Fd: AsFd>(
    socket: Fd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    recv_with_fd_flags(socket, buf, RecvFlags::empty())
}

/// [`recv_with_fd`] that never waits: `WouldBlock` when nothing is queued.
pub(crate) fn recv_with_fd_now<Fd: AsFd>(
    socket: Fd,
    buf: &mut [u8],
) -> io::Result<(usize, Option<OwnedFd>)> {
    recv_with_fd_flags(socket, buf, RecvFlags::DONTWAIT)
}

fn recv_with_fd_flags<Fd: AsFd>(
    socket: Fd,
    buf: &mut [u8],
    flags: RecvFlags,
) -> io::Result<(usize, Option<OwnedFd>)> {
    loop {
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(2))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        match rustix::net::recvmsg(
            socket.as_fd(),
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC | flags,
        ) {
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
            Ok(got) => {
                let fd = control.drain().find_map(|m| match m {
                    RecvAncillaryMessage::ScmRights(mut fds) => fds.next(),
                    _ => None,
                });
                if got.flags.contains(ReturnFlags::TRUNC) {
                    return Err(io::Error::from_raw_os_error(libc::EMSGSIZE));
                }
                return Ok((got.bytes, fd));
            }
        }
    }
}
