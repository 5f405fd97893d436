//! SIGINT, SIGTERM and SIGHUP passed on to the command that runs under a
//! freeze: the user's Ctrl-C stops the command, and the thaw follows its
//! exit. Caught from before the freeze, so that one that comes while
//! freezing is passed on too rather than killing the freezer.

use std::process::{Child, ExitStatus};

use rustix::process::{PidfdFlags, Signal, pidfd_open, pidfd_send_signal};
use signal_hook::iterator::Signals;

/// The signals passed on, by every command of freezefs that runs another.
pub const RELAYED: [Signal; 3] = [Signal::INT, Signal::TERM, Signal::HUP];

/// The relayed signals, caught (they no longer end this process).
pub struct Relay(Signals);

impl Relay {
    /// Catches the relayed signals; they wait for [`Relay::wait`].
    pub fn catch() -> std::io::Result<Relay> {
        Signals::new(RELAYED.map(Signal::as_raw)).map(Relay)
    }

    /// Waits for `child` to exit, passing on every relayed signal, those
    /// caught before it started included, through its pidfd: never to a
    /// process that took its pid since. Without a pidfd or a thread to
    /// relay on, it still waits: the command runs, and the thaw must
    /// follow its exit.
    pub fn wait(mut self, child: &mut Child) -> std::io::Result<ExitStatus> {
        let pid = rustix::process::Pid::from_raw(child.id() as i32).expect("a child's pid");
        let Ok(pidfd) = pidfd_open(pid, PidfdFlags::empty()) else {
            return child.wait();
        };
        let handle = self.0.handle();
        let relay = std::thread::Builder::new()
            .name("freezefs-relay".into())
            .spawn(move || {
                for signal in self.0.forever() {
                    if let Some(signal) = Signal::from_named_raw(signal) {
                        let _ = pidfd_send_signal(&pidfd, signal);
                    }
                }
            });
        let status = child.wait();
        handle.close();
        if let Ok(relay) = relay {
            let _ = relay.join();
        }
        status
    }
}
