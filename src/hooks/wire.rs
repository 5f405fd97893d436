//! How hooks travel to the holder: in the words of a request line, paths in
//! hex (any bytes, no spaces).

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

use crate::hooks::finding::{HookTarget, Hooks};

impl Hooks {
    /// The words that carry these hooks in a request to the holder:
    /// `LIMIT DIR` (paths in hex: any bytes, no spaces).
    pub(crate) fn wire(&self) -> String {
        format!("{} {}", self.limit_s, hex(self.dir.as_os_str().as_bytes()))
    }

    /// Reads what [`Hooks::wire`] wrote.
    pub(crate) fn from_wire<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<Hooks> {
        Some(Hooks {
            limit_s: words.next()?.parse().ok()?,
            dir: PathBuf::from(OsStr::from_bytes(&unhex(words.next()?)?)),
            count: 0,
        })
    }
}

impl HookTarget {
    /// `DEVICE MOUNTPOINT` for a request to the holder (the path in hex).
    pub(crate) fn wire(&self) -> String {
        format!(
            "{} {}",
            self.device,
            hex(self.mount_point.as_os_str().as_bytes())
        )
    }

    /// Reads what [`HookTarget::wire`] wrote.
    pub(crate) fn from_wire<'a>(words: &mut impl Iterator<Item = &'a str>) -> Option<HookTarget> {
        Some(HookTarget {
            device: words.next()?.parse().ok()?,
            mount_point: PathBuf::from(OsStr::from_bytes(&unhex(words.next()?)?)),
        })
    }
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
