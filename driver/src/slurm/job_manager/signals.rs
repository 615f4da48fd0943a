//! Ctrl-C while the manager watches.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;

use super::ManagerError;

/// SIGINT/SIGTERM set the interrupt flag while it lives; a second one ends the process at once.
pub(super) struct SignalGuard {
    ids: Vec<signal_hook::SigId>,
}

impl SignalGuard {
    pub(super) fn install(flag: &Arc<AtomicBool>) -> Result<Self, ManagerError> {
        use signal_hook::consts::{SIGINT, SIGTERM};
        let mut ids = Vec::new();
        for signal in [SIGINT, SIGTERM] {
            ids.push(
                signal_hook::flag::register_conditional_shutdown(signal, 130, flag.clone())
                    .map_err(ManagerError::Signals)?,
            );
            ids.push(
                signal_hook::flag::register(signal, flag.clone()).map_err(ManagerError::Signals)?,
            );
        }
        Ok(Self { ids })
    }
}

impl Drop for SignalGuard {
    fn drop(&mut self) {
        for id in self.ids.drain(..) {
            signal_hook::low_level::unregister(id);
        }
    }
}
