//! The service manager's readiness protocol (`sd_notify(3)`): with `NOTIFY_SOCKET` set,
//! as systemd sets it for a `Type=notify` or `Type=notify-reload` unit, the daemon says
//! `READY=1` once its listeners are bound and its configuration applied,
//! `RELOADING=1` (with `MONOTONIC_USEC`, which `Type=notify-reload` wants) when a SIGHUP
//! reload begins and `READY=1` when it is over, and `STOPPING=1` when it begins to stop.
//! Without `NOTIFY_SOCKET` every call does nothing. A message that cannot be sent is
//! logged and never fatal: BGP goes on without the service manager's bookkeeping.

use sd_notify::NotifyState;
use tracing::warn;

/// `READY=1`: started, or a reload is over.
pub fn ready() {
    send(&[NotifyState::Ready], "READY=1");
}

/// `RELOADING=1` and `MONOTONIC_USEC` (the `CLOCK_MONOTONIC` time the reload began).
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now], "RELOADING=1"),
        Err(e) => {
            warn!("sd_notify: cannot read CLOCK_MONOTONIC: {e}");
            send(&[NotifyState::Reloading], "RELOADING=1");
        }
    }
}

/// `STOPPING=1`: shutting down.
pub fn stopping() {
    send(&[NotifyState::Stopping], "STOPPING=1");
}

fn send(states: &[NotifyState<'_>], what: &str) {
    if let Err(e) = sd_notify::notify(states) {
        warn!("sd_notify: cannot send {what} to NOTIFY_SOCKET: {e}");
    }
}
