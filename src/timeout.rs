//! The timeout of a freeze, as AdvFS defines it.

use std::ffi::c_int;
use std::path::Path;

use crate::config::{self, DefaultTimeout};
use crate::error::{Error, Result};

/// How long a freeze may last before it thaws by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// The default: `freezefs_default_timeout` in the `vfs:` stanza of the
    /// sysconfigtab file, read at the time of the freeze; 60 s when it is
    /// missing, 0 or invalid; no timeout when it is negative.
    Default,
    /// No timeout: frozen until explicitly thawed.
    Never,
    /// Thaw after this many seconds (at least 1).
    Seconds(u32),
}

impl Timeout {
    /// The C convention: `> 0` seconds, `0` the default, `< 0` no timeout.
    pub fn from_c(timeout: c_int) -> Timeout {
        match timeout {
            t if t > 0 => Timeout::Seconds(t as u32),
            0 => Timeout::Default,
            _ => Timeout::Never,
        }
    }

    /// The timeout in seconds, `None` for no timeout, reading `sysconfigtab`
    /// for [`Timeout::Default`].
    pub(crate) fn resolve(self, sysconfigtab: &Path) -> Result<Option<u32>> {
        match self {
            Timeout::Seconds(0) => Err(Error::InvalidArgument(
                "Timeout::Seconds(0); use Timeout::Default for the default",
            )),
            Timeout::Seconds(n) => Ok(Some(n)),
            Timeout::Never => Ok(None),
            Timeout::Default => Ok(match config::default_timeout(sysconfigtab) {
                DefaultTimeout::Seconds(n) => Some(n),
                DefaultTimeout::Never => None,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c_values_map_to_the_three_kinds() {
        assert_eq!(Timeout::from_c(5), Timeout::Seconds(5));
        assert_eq!(
            Timeout::from_c(c_int::MAX),
            Timeout::Seconds(c_int::MAX as u32)
        );
        assert_eq!(Timeout::from_c(0), Timeout::Default);
        assert_eq!(Timeout::from_c(-1), Timeout::Never);
        assert_eq!(Timeout::from_c(c_int::MIN), Timeout::Never);
    }

    #[test]
    fn zero_seconds_is_rejected() {
        let e = Timeout::Seconds(0)
            .resolve(Path::new("/nonexistent"))
            .unwrap_err();
        assert_eq!(e.errno(), libc::EINVAL);
    }

    #[test]
    fn default_without_a_file_is_60() {
        let t = Timeout::Default.resolve(Path::new("/nonexistent")).unwrap();
        assert_eq!(t, Some(60));
    }
}
