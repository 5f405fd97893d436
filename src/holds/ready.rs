//! Starting a hold hook: `HOOK hold MOUNTPOINT...` with its stdin a pipe
//! of ours and its ready pipe as fd 3, and reading its `ready` line.

use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustix::process::Pid;

use crate::hooks::HookTarget;
use crate::hooks::running::{Output, clean_command};
use crate::os::syscalls;

/// The most of a `ready` line that is read: a binlog position, a GTID set.
const READY_BYTES: usize = 4096;

/// `ready` or `ready TEXT`: the text, control characters made blanks.
pub(crate) fn ready_text(line: &[u8]) -> Option<String> {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let rest = line.strip_prefix(b"ready")?;
    let text = match rest {
        [] => &[][..],
        [b' ' | b'\t', text @ ..] => text,
        _ => return None,
    };
    let text = String::from_utf8_lossy(text);
    Some(
        text.chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect::<String>()
            .trim()
            .to_string(),
    )
}

/// What a hold hook said on fd 3 before its `ready` line ended, or why
/// it did not: it exited, or `limit` passed.
pub(crate) fn read_ready(ready: &OwnedFd, pid: Pid, limit: Duration) -> Result<Vec<u8>, String> {
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .map_err(|e| format!("could not watch it: {e}"))?;
    let deadline = Instant::now() + limit;
    let mut said = Vec::new();
    loop {
        if let Some(end) = said.iter().position(|&b| b == b'\n') {
            said.truncate(end + 1);
            return Ok(said);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!("not ready within {} s", limit.as_secs()));
        }
        let timeout = rustix::time::Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: left.subsec_nanos() as i64,
        };
        let mut fds = [
            rustix::event::PollFd::new(ready, rustix::event::PollFlags::IN),
            rustix::event::PollFd::new(&pidfd, rustix::event::PollFlags::IN),
        ];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(format!("could not wait for it: {e}")),
        }
        if !fds[0].revents().is_empty() {
            let mut buf = [0u8; 512];
            match rustix::io::read(ready, &mut buf) {
                Ok(0) => {
                    // Its exit closes the pipe too: say which came.
                    let mut exit = [rustix::event::PollFd::new(
                        &pidfd,
                        rustix::event::PollFlags::IN,
                    )];
                    let moment = rustix::time::Timespec {
                        tv_sec: 0,
                        tv_nsec: 200_000_000,
                    };
                    return Err(match rustix::event::poll(&mut exit, Some(&moment)) {
                        Ok(n) if n > 0 => "exited before it was ready".into(),
                        _ => "closed its ready descriptor without a ready line".into(),
                    });
                }
                Ok(n) if said.len() + n > READY_BYTES => {
                    return Err(format!("said over {READY_BYTES} bytes without a line end"));
                }
                Ok(n) => said.extend_from_slice(&buf[..n]),
                Err(rustix::io::Errno::INTR | rustix::io::Errno::AGAIN) => {}
                Err(e) => return Err(format!("could not read its ready line: {e}")),
            }
        } else if !fds[1].revents().is_empty() {
            return Err("exited before it was ready".into());
        }
    }
}

/// Spawns `hook hold MOUNTPOINT...` with its stdin a pipe of ours, its
/// ready pipe as fd 3, its output read into `output`.
pub(crate) fn spawn(
    hook: &Path,
    targets: &[HookTarget],
    output: &Arc<Output>,
) -> std::io::Result<(Child, OwnedFd, OwnedFd)> {
    use rustix::pipe::{PipeFlags, pipe_with};
    let (stdin_read, stdin_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (ready_read, ready_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let (out_read, out_write) = pipe_with(PipeFlags::CLOEXEC)?;
    let mut cmd = clean_command(hook, "hold");
    cmd.args(targets.iter().map(|t| &t.mount_point))
        .env("FREEZEFS_READY_FD", "3")
        .stdin(Stdio::from(stdin_read))
        .stdout(Stdio::from(out_write.try_clone()?))
        .stderr(Stdio::from(out_write));
    if let [target] = targets {
        cmd.env("FREEZEFS_MOUNT_POINT", &target.mount_point)
            .env("FREEZEFS_DEVICE", target.device.to_string());
    }
    syscalls::pass_as_fd3(&mut cmd, ready_write.as_fd());
    let child = cmd.spawn()?;
    drop(cmd);
    drop(ready_write);
    let filled = Arc::clone(output);
    std::thread::Builder::new()
        .name("freezefs-hook-output".into())
        .spawn(move || filled.read_all(out_read))?;
    Ok((child, stdin_write, ready_read))
}

#[cfg(test)]
mod tests {
    use super::ready_text;

    #[test]
    fn a_ready_line_gives_its_text() {
        assert_eq!(ready_text(b"ready\n").as_deref(), Some(""));
        assert_eq!(
            ready_text(b"ready gtid=0-1-42\n").as_deref(),
            Some("gtid=0-1-42")
        );
        assert_eq!(ready_text(b"ready a\x07b\n").as_deref(), Some("a b"));
    }

    #[test]
    fn anything_but_a_ready_line_is_refused() {
        for line in [&b"readyx\n"[..], b"not ready\n", b"\n", b"READY\n"] {
            assert_eq!(ready_text(line), None, "{line:?}");
        }
    }
}
