//! No client can stall or fool the holder (issue 19): connections that
//! never send, messages too long, requests that do not parse whole.

use crate::support;

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
use support::{Kind, Scratch, kernel_frozen, live_holders, wait_until, with_env};

/// A connection to the scratch's holder socket, as any root process can
/// make one.
fn connect(fs: &Scratch) -> OwnedFd {
    let sock = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::SEQPACKET,
        SocketFlags::CLOEXEC,
        None,
    )
    .unwrap();
    let addr = SocketAddrUnix::new(fs.state_dir().join("holder.sock")).unwrap();
    rustix::net::connect(&sock, &addr).unwrap();
    sock
}

/// Sends `request` (with an fd on the mount when `with_fd`) and returns the
/// holder's answer, or "" when it closed the connection.
fn ask(fs: &Scratch, request: &[u8], with_fd: bool) -> String {
    let sock = connect(fs);
    let mount = std::fs::File::open(&fs.mnt).unwrap();
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = rustix::net::SendAncillaryBuffer::new(&mut space);
    let fds = [mount.as_fd()];
    if with_fd {
        assert!(control.push(rustix::net::SendAncillaryMessage::ScmRights(&fds)));
    }
    rustix::net::sendmsg(
        &sock,
        &[std::io::IoSlice::new(request)],
        &mut control,
        rustix::net::SendFlags::NOSIGNAL,
    )
    .unwrap();
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(5)),
    )
    .unwrap();
    let mut answer = [0u8; 256];
    let n = rustix::net::recv(&sock, &mut answer, rustix::net::RecvFlags::empty())
        .map(|(n, _)| n)
        .unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

fn freezefs(fs: &Scratch, mnt: &Path, timeout: &str) {
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let out = with_env(cmd.args(["-t", timeout]).arg(mnt), fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}

fn boot_ns() -> i64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    ts.tv_sec * 1_000_000_000 + ts.tv_nsec
}

/// Ten connections that never send: the deadline fires within 50 ms of its
/// time, and another client's FREEZE takes under a second.
#[test]
fn ten_silent_connections_delay_neither_a_deadline_nor_another_client() {
    let fs = Scratch::new(Kind::Ext4);
    let other = Scratch::new(Kind::Ext4);
    freezefs(&fs, &fs.mnt, "2");
    let deadline: i64 = fs
        .record_text()
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("deadline_boot_ns ")?.parse().ok())
        .unwrap();
    let silent: Vec<OwnedFd> = (0..10).map(|_| connect(&fs)).collect();
    let asked = Instant::now();
    freezefs(&fs, &other.mnt, "30");
    let took = asked.elapsed();
    assert!(wait_until(
        Duration::from_secs(4),
        Duration::from_millis(2),
        || { !fs.kernel_frozen() }
    ));
    let late_ms = (boot_ns() - deadline) as f64 / 1e6;
    eprintln!(
        "hostile: 10 silent connections: another FREEZE took {:.1} ms, the deadline fired {late_ms:.1} ms late",
        took.as_secs_f64() * 1e3
    );
    assert!(
        took < Duration::from_secs(1),
        "another client waited {took:?}"
    );
    assert!(late_ms <= 50.0, "the deadline fired {late_ms} ms late");
    drop(silent);
    other
        .freezer()
        .with_state_dir(fs.state_dir())
        .thaw(&other.mnt)
        .unwrap();
}

/// A connection that never sends is dropped after a short time.
#[test]
fn a_silent_connection_is_dropped() {
    let fs = Scratch::new(Kind::Ext4);
    freezefs(&fs, &fs.mnt, "30");
    let sock = connect(&fs);
    rustix::net::sockopt::set_socket_timeout(
        &sock,
        rustix::net::sockopt::Timeout::Recv,
        Some(Duration::from_secs(5)),
    )
    .unwrap();
    let started = Instant::now();
    let mut byte = [0u8; 1];
    let got = rustix::net::recv(&sock, &mut byte, rustix::net::RecvFlags::empty());
    assert!(matches!(got, Ok((0, _))), "{got:?}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// A message longer than the holder reads is refused whole, never cut short
/// and parsed.
#[test]
fn a_request_over_64_kib_is_refused_whole() {
    let fs = Scratch::new(Kind::Ext4);
    freezefs(&fs, &fs.mnt, "30");
    let device = fs.device();
    let mut request = format!("probe {device}").into_bytes();
    request.resize(70 * 1024, b' ');
    assert_eq!(ask(&fs, &request, true), "refused");
    // A well-formed probe still works, and the holder still keeps the freeze.
    assert_eq!(
        ask(&fs, format!("probe {device}\n").as_bytes(), true),
        "frozen"
    );
    fs.freezer().thaw(&fs.mnt).unwrap();
}

/// A `hold` whose hook part does not parse, or with a word too many, is
/// refused: never taken with its hooks silently dropped.
#[test]
fn a_hold_with_a_hook_part_that_does_not_parse_is_refused() {
    let fs = Scratch::new(Kind::Ext4);
    freezefs(&fs, &fs.mnt, "30");
    let device = fs.device();
    for request in [
        format!("hold {device} 77 10 zz\n"),
        format!("hold {device} 77 10 2f746d70\n"),
        format!("hold {device} 77 10 2f746d70 {device} 2f zz\n"),
        format!("probe {device} extra\n"),
    ] {
        assert_eq!(ask(&fs, request.as_bytes(), true), "refused", "{request}");
    }
    let holders = live_holders(&fs);
    assert_eq!(holders.len(), 1);
    assert!(kernel_frozen(&std::fs::File::open(&fs.mnt).unwrap()));
    fs.freezer().thaw(&fs.mnt).unwrap();
}
