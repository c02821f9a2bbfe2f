//! sd_notify: READY, WATCHDOG and STOPPING. All calls are no-ops without `NOTIFY_SOCKET`.

use std::time::Duration;

use sd_notify::NotifyState;

pub fn ready() {
    notify(&[NotifyState::Ready]);
}

pub fn stopping() {
    notify(&[NotifyState::Stopping]);
}

fn notify(state: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(false, state) {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

/// Half the watchdog period systemd asked for (`WATCHDOG_USEC`), if it asked for one.
pub fn watchdog_interval() -> Option<Duration> {
    let mut usec = 0;
    sd_notify::watchdog_enabled(false, &mut usec).then(|| Duration::from_micros(usec / 2))
}

/// Pings the watchdog every `interval` while `healthy()` holds. A daemon whose store cannot
/// write any more stops pinging, and systemd restarts it.
pub async fn watchdog(interval: Duration, healthy: impl Fn() -> bool) {
    let mut ticker = tokio::time::interval(interval);
    loop {
        ticker.tick().await;
        if healthy() {
            notify(&[NotifyState::Watchdog]);
        } else {
            tracing::error!("unhealthy: not pinging the systemd watchdog");
        }
    }
}
