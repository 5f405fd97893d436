//! The holder under socket activation, as systemd starts it from
//! freezefs-holder.socket, driven by `systemd-socket-activate` (the same
//! LISTEN_FDS protocol, without PID 1): clients connect as they always do.

use crate::support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::{Kind, Scratch, holder_exe, wait_until, with_env};

/// `systemd-socket-activate --seqpacket` listening on the scratch's
/// `holder.sock`, starting the holder on the first connection; killed on drop.
struct Activator(Child);

impl Activator {
    fn start(fs: &Scratch) -> Activator {
        let run = fs.state_dir();
        std::fs::create_dir_all(&run).unwrap();
        std::fs::set_permissions(&run, std::fs::Permissions::from_mode(0o700)).unwrap();
        let socket = run.join("holder.sock");
        let child = Command::new("systemd-socket-activate")
            .arg("--seqpacket")
            .arg("-l")
            .arg(&socket)
            .arg(holder_exe())
            .arg("--serve")
            .arg(&run)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(5), Duration::from_millis(10), || socket
                .exists()),
            "systemd-socket-activate did not listen"
        );
        Activator(child)
    }
}

impl Drop for Activator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_socket_activated_holder_keeps_a_freeze_and_thaws_it_when_stopped() {
    let fs = Scratch::new(Kind::Ext4);
    let activator = Activator::start(&fs);
    let mut cmd = Command::new(crate::support::freezefs_exe());
    let out = with_env(cmd.args(["-t", "60"]).arg(&fs.mnt), &fs)
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // systemd-socket-activate execs the holder in its own process: the
    // holder is the activator's pid, with the socket it was given.
    let status = fs.freezer().status(&fs.mnt).unwrap();
    assert_eq!(status.holder_pid, Some(activator.0.id()));
    assert!(fs.kernel_frozen());
    // Idle, it stays (systemd would restart it at once otherwise); asked to
    // stop, it thaws.
    std::thread::sleep(Duration::from_millis(300));
    assert!(support::running(activator.0.id()));
    let pid = rustix::process::Pid::from_raw(activator.0.id() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    assert!(wait_until(
        Duration::from_secs(1),
        Duration::from_millis(5),
        || !fs.kernel_frozen()
    ));
    let last = fs.freezer().status(&fs.mnt).unwrap().last_freeze.unwrap();
    assert_eq!(last.reason, freezefs::EndReason::HolderStopped);
}
