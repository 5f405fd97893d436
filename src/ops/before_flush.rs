//! What a FREEZE asks of the holder before its first flush, hold hooks
//! first and freeze hooks next, and how it takes that back on a rollback.

use std::path::PathBuf;

use crate::error::Result;
use crate::holder::hook_client::{self, HoldsAsked, HooksAsked};
use crate::holds::HoldHooks;
use crate::hooks::{HookTarget, Hooks};
use crate::store::hold_notes::HoldNote;
use crate::store::state_dir::StateDir;

/// The hooks a batch asked for, and the connections they were asked on:
/// kept until its freezes are recorded, or rolled back. Dropped without a
/// rollback (the caller died), the holder undoes them itself.
pub(crate) struct Asked {
    exe: PathBuf,
    hooks: Option<Hooks>,
    hooks_asked: Option<HooksAsked>,
    holds: Option<HoldHooks>,
    holds_asked: Option<HoldsAsked>,
    targets: Vec<HookTarget>,
}

impl Asked {
    /// Starts the hold hooks, then runs the freeze hooks (freezefs(8): the
    /// freeze hooks' quiescing runs under the application's lock). The
    /// holds' notes go into every record of the batch.
    pub(crate) fn before_flush(
        dir: &StateDir,
        exe: PathBuf,
        hooks: Option<Hooks>,
        holds: Option<HoldHooks>,
        targets: Vec<HookTarget>,
    ) -> Result<(Asked, Vec<HoldNote>)> {
        let mut asked = Asked {
            exe,
            hooks: None,
            hooks_asked: None,
            holds,
            holds_asked: None,
            targets,
        };
        let mut notes = Vec::new();
        if let Some(holds) = &asked.holds {
            let (holds_asked, ready) =
                hook_client::start_holds(dir, &asked.exe, holds, &asked.targets)?;
            asked.holds_asked = Some(holds_asked);
            notes = ready;
        }
        if let Some(hooks) = hooks {
            match hook_client::run_freeze_hooks(dir, &asked.exe, &hooks, &asked.targets) {
                Ok(hooks_asked) => {
                    asked.hooks = Some(hooks);
                    asked.hooks_asked = Some(hooks_asked);
                }
                Err(e) => {
                    // Their own thaw hooks ran in the holder; the holds let go.
                    asked.roll_back(dir);
                    return Err(e);
                }
            }
        }
        Ok((asked, notes))
    }

    /// After a rollback (nothing is frozen any more): the thaw hooks, reason
    /// `rolled-back`, then the hold hooks let go, each asked on its own
    /// connection.
    pub(crate) fn roll_back(&mut self, dir: &StateDir) {
        if let Some(hooks) = &self.hooks {
            let asked = self.hooks_asked.take();
            let _ = hook_client::run_thaw_hooks(
                dir,
                &self.exe,
                hooks,
                &self.targets,
                "rolled-back",
                asked,
            );
        }
        if let (Some(holds), Some(asked)) = (&self.holds, self.holds_asked.take()) {
            hook_client::release_holds(asked, &self.exe, holds, "rolled-back");
        }
    }
}
