//! The exit statuses of a command run under a freeze, as env(1) and
//! timeout(1) give them: the command's own, or one of these.

use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;

/// The command ran, but a freeze (or a member's, in a group) ended before
/// it did: the snapshot is not consistent.
pub const NOT_HELD: i32 = 3;
/// The freezing command itself failed; nothing is frozen.
pub const FAILED: i32 = 125;
/// The command was found but cannot run.
pub const CANNOT_RUN: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// A usage error of the freezing command.
pub const USAGE: i32 = 2;

/// A command's exit status as a shell reports it: its code, or 128 + the
/// signal that killed it.
pub fn code_of(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        _ => FAILED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_is_128_and_its_number() {
        assert_eq!(code_of(ExitStatus::from_raw(3 << 8)), 3);
        assert_eq!(code_of(ExitStatus::from_raw(15)), 143);
    }
}
