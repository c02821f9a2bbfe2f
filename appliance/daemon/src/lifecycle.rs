//! How the daemon ends other than by a stop signal: an admin or the cloud asked for the daemon
//! to be started again (factory reset) or for the box to reboot. `run` waits for a request
//! beside the signals, shuts down in order, and returns it; `main` turns it into the exit status
//! `applianced.service` acts on (75: restart, 76: reboot, through its `ExecStopPost`). The
//! daemon itself never reboots the machine: it runs without privileges.

use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// How `run` ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// A stop signal.
    Stopped,
    /// The daemon must be started again (a factory reset waits for the next start).
    Restart,
    /// The box must reboot (an installed update runs from the other slot after it).
    Reboot,
}

/// Shared by whoever may ask the daemon to end; cheap to clone.
#[derive(Clone, Default)]
pub struct ExitRequests {
    requested: Arc<Mutex<Option<Exit>>>,
    token: CancellationToken,
}

impl ExitRequests {
    /// Asks the daemon to end with `exit`. The first request wins: either way the daemon stops,
    /// and what a factory reset left on disk is carried out at the next start.
    pub fn request(&self, exit: Exit) {
        let mut requested = self.requested.lock().unwrap_or_else(|p| p.into_inner());
        if requested.is_none() {
            *requested = Some(exit);
            tracing::warn!(?exit, "the daemon was asked to end");
        }
        self.token.cancel();
    }

    /// Resolves with the first request.
    pub async fn requested(&self) -> Exit {
        self.token.cancelled().await;
        self.requested
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .unwrap_or(Exit::Stopped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_request_wins() {
        let exits = ExitRequests::default();
        let waiter = tokio::spawn({
            let exits = exits.clone();
            async move { exits.requested().await }
        });
        exits.request(Exit::Reboot);
        exits.request(Exit::Restart);
        assert_eq!(waiter.await.unwrap(), Exit::Reboot);
        assert_eq!(exits.requested().await, Exit::Reboot);
    }
}
