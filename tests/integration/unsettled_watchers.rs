//! A freeze's watcher between its states: told to go and not blocked yet,
//! or neither waiting nor gone (its holder stopped). THAW and the deadline
//! neither take it for another tool's thaw nor leave the filesystem
//! frozen. A thread or process of the test stands in for the watcher,
//! named in the freeze's record as a FREEZE writes it.

use std::process::Command;
use std::time::Duration;

use crate::support::{Kind, Scratch, fzctl, fzctl_cmd, wait_until};

/// A freeze's watcher exists before it waits: its FREEZE may be killed
/// after recording the freeze and before checking that the watcher waits,
/// and a busy holder may not have run it yet. A THAW then is no thaw by
/// another tool: it waits for the watcher to block, thaws, and says so.
/// (Stood in for by a thread of this test that blocks 200 ms late.)
#[test]
fn a_thaw_before_the_freezes_watcher_blocks_thaws_it() {
    let fs = Scratch::new(Kind::Ext4);
    assert_eq!(
        fzctl(&mut fzctl_cmd(&fs, "1", &fs.mnt, "30")),
        "rc=0 errno=0"
    );
    let (tid_tx, tid_rx) = std::sync::mpsc::channel();
    let late = fs.mnt.join(".no-such-name");
    let late_watcher = std::thread::spawn(move || {
        let me = std::fs::read_link("/proc/thread-self").unwrap();
        tid_tx.send(me.file_name().unwrap().to_owned()).unwrap();
        std::thread::sleep(Duration::from_millis(200));
        // Waits in the kernel until the thaw, then finds no such file.
        let _ = std::fs::remove_file(late);
    });
    let tid: u32 = tid_rx.recv().unwrap().to_str().unwrap().parse().unwrap();
    name_as_watcher(&fs, std::process::id(), tid);
    let thawed = fs.freezer().thaw(&fs.mnt);
    if thawed.is_err() {
        let _ = fs.other_tool_thaws();
    }
    late_watcher.join().unwrap();
    thawed.expect("a watcher not blocked yet was taken for another tool's thaw");
    assert!(!fs.kernel_frozen());
}

/// Names thread `tid` of process `pid` as the freeze's watcher, in its
/// record as a FREEZE writes it.
fn name_as_watcher(fs: &Scratch, pid: u32, tid: u32) {
    fs.rewrite_record(&[
        ("holder_pid", pid.to_string()),
        ("watcher", format!("{tid} 1")),
    ]);
}

/// Freezes `fs` with a timeout of `timeout_s` from a process that then
/// exits, and names a sleeping process as its watcher: one that neither
/// waits for the thaw nor goes.
fn frozen_with_a_silent_watcher(fs: &Scratch, timeout_s: &str) -> SilentStandIn {
    assert_eq!(
        fzctl(&mut fzctl_cmd(fs, "1", &fs.mnt, timeout_s)),
        "rc=0 errno=0"
    );
    let silent = SilentStandIn(Command::new("sleep").arg("30").spawn().unwrap());
    name_as_watcher(fs, silent.0.id(), silent.0.id());
    silent
}

/// The sleeping process standing in for a silent watcher: ended when
/// dropped, even when the test fails before it is done with it.
struct SilentStandIn(std::process::Child);

impl Drop for SilentStandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether `fs` was left frozen (then thawed here, so that the test ends
/// with nothing frozen); ends the sleeping stand-in `silent`.
fn was_left_frozen(fs: &Scratch, silent: SilentStandIn) -> bool {
    let still_frozen = fs.kernel_frozen();
    if still_frozen {
        let _ = fs.other_tool_thaws();
    }
    drop(silent);
    still_frozen
}

/// A watcher that neither waits nor goes (its holder stopped by a signal
/// between being told to go and blocking) tells nothing. A THAW then
/// thaws all the same, so that nothing stays frozen, and answers that the
/// freeze cannot be relied on (EALREADY), since it could not see whether
/// another tool thawed it first. (Stood in for by a sleeping process.)
#[test]
fn a_thaw_whose_watcher_never_settles_thaws_and_says_it_cannot_vouch() {
    let fs = Scratch::new(Kind::Ext4);
    let silent = frozen_with_a_silent_watcher(&fs, "30");
    let thawed = fs.freezer().thaw(&fs.mnt);
    let still_frozen = was_left_frozen(&fs, silent);
    assert!(!still_frozen, "a THAW left the filesystem frozen");
    assert_eq!(
        thawed.expect_err("expected EALREADY").errno(),
        libc::EALREADY
    );
}

/// The same watcher asked by QUERY: it cannot say whether the freeze still
/// stands (its holder may be stopped after a thaw let it through), so
/// QUERY fails with ECHILD, as for any holder that cannot answer, and
/// never guesses "frozen".
#[test]
fn a_query_whose_watcher_never_settles_fails_echild_and_never_guesses() {
    let fs = Scratch::new(Kind::Ext4);
    let silent = frozen_with_a_silent_watcher(&fs, "30");
    let asked = fs.freezer().is_frozen(&fs.mnt);
    let _ = was_left_frozen(&fs, silent);
    assert_eq!(asked.expect_err("expected ECHILD").errno(), libc::ECHILD);
}

/// The same watcher at the deadline: the freeze is thawed then (within the
/// second its keeper gives the watcher to settle), never left frozen.
#[test]
fn a_deadline_whose_watcher_never_settles_still_thaws() {
    let fs = Scratch::new(Kind::Ext4);
    let silent = frozen_with_a_silent_watcher(&fs, "2");
    // Until the deadline QUERY cannot tell (see the test above).
    let thawed = wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
        fs.freezer().is_frozen(&fs.mnt).is_ok_and(|frozen| !frozen)
    });
    // The kernel's word, asked only once the record says it ended.
    let still_frozen = was_left_frozen(&fs, silent);
    assert!(
        thawed && !still_frozen,
        "the deadline left the filesystem frozen"
    );
}
