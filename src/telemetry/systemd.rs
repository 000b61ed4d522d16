//! systemd integration: `sd_notify` readiness, reload, stopping and watchdog messages. Every
//! function does nothing (successfully) when the daemon does not run under systemd
//! (`$NOTIFY_SOCKET` unset).

use std::time::Duration;

use sd_notify::NotifyState;
use tokio_util::sync::CancellationToken;

fn send(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "Could not notify systemd.");
    }
}

/// The daemon is serving (READY=1), with a one-line status.
pub fn ready(status: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(status)]);
}

/// A one-line status for `systemctl status`.
pub fn status(status: &str) {
    send(&[NotifyState::Status(status)]);
}

/// The daemon is shutting down (STOPPING=1).
pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("draining")]);
}

/// Pings the watchdog at half its interval until `shutdown`, when systemd asked for one
/// (`WatchdogSec=`). The pings come from the async runtime, so a wedged runtime is noticed.
pub fn spawn_watchdog(shutdown: CancellationToken) {
    let Some(interval) = sd_notify::watchdog_enabled() else {
        return;
    };
    let period = (interval / 2).max(Duration::from_millis(100));
    tokio::spawn(async move {
        loop {
            send(&[NotifyState::Watchdog]);
            tokio::select! {
                () = shutdown.cancelled() => return,
                () = tokio::time::sleep(period) => {}
            }
        }
    });
}
