//! What a client may ask the holder, read whole or not at all: a request
//! with a part that does not parse, or a word too many, is refused.

use std::ffi::OsStr;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::sync::Arc;

use crate::holder::hook_jobs::HookRequest;
use crate::hooks::{HookTarget, Hooks};
use crate::keep::watch::Watch;
use crate::os::mounts::Device;
use crate::store::state_dir::StateDir;

/// What a client asks.
pub(crate) enum Request {
    /// `hold DEVICE GENERATION`, with the mount fd and maybe a directory fd:
    /// keep this freeze attempt.
    Hold(Box<Watch>),
    /// `probe DEVICE`, with a directory fd: is that filesystem frozen, by
    /// whoever?
    Probe(Device, OwnedFd),
    /// Run hooks (see [`HookRequest`]).
    Hooks(HookRequest),
}

/// Reads a request (its bytes and the fd that came with it).
pub(crate) fn parse(bytes: &[u8], fd: Option<OwnedFd>, dir: &Arc<StateDir>) -> Option<Request> {
    let text = OsStr::from_bytes(bytes).to_str()?;
    let mut words = text.split_whitespace();
    let verb = words.next()?;
    if verb.starts_with("hooks-") {
        return HookRequest::parse(verb, words).map(Request::Hooks);
    }
    let device: Device = words.next()?.parse().ok()?;
    let request = match verb {
        "hold" => {
            let generation: u64 = words.next()?.parse().ok()?;
            let mount_fd = fd?;
            // Hooks and their target, both whole, or nothing at all.
            let hooks = match words.next() {
                None => None,
                Some(limit) => {
                    let mut rest = std::iter::once(limit).chain(&mut words);
                    let hooks = Hooks::from_wire(&mut rest)?;
                    Some((hooks, HookTarget::from_wire(&mut rest)?))
                }
            };
            Request::Hold(Box::new(Watch {
                dir: Arc::clone(dir),
                device,
                generation,
                // Review at once: the record says what to do next.
                wake_at: Some(0),
                mount_fd,
                attempt: None,
                seen: false,
                waiter: None,
                defers_to_holder: false,
                last_record: None,
                hooks,
            }))
        }
        "probe" => Request::Probe(device, fd?),
        _ => return None,
    };
    words.next().is_none().then_some(request)
}
