//! The systemd service protocol: readiness, status lines, watchdog pings, stopping.
//!
//! Every message goes to `$NOTIFY_SOCKET` and is silently skipped when the process
//! does not run under systemd (no socket). Which message is sent when is decided by
//! `main` (ready, stopping) and the supervisor (status, watchdog); this module only
//! speaks the protocol.

use std::time::Duration;

use sd_notify::NotifyState;

/// Tells systemd the service is up (`READY=1`).
pub fn ready() {
    send(&[NotifyState::Ready]);
}

/// Tells systemd shutdown has begun (`STOPPING=1`).
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Sets the one-line status `systemctl status` shows (`STATUS=`).
pub fn status(line: &str) {
    send(&[NotifyState::Status(line)]);
}

/// Pings the watchdog (`WATCHDOG=1`).
pub fn watchdog() {
    send(&[NotifyState::Watchdog]);
}

/// The watchdog timeout systemd enforces, when it watches this process:
/// `$WATCHDOG_USEC`, unless `$WATCHDOG_PID` names another process.
pub fn watchdog_timeout() -> Option<Duration> {
    let usec: u64 = std::env::var("WATCHDOG_USEC").ok()?.parse().ok()?;
    if let Ok(pid) = std::env::var("WATCHDOG_PID") {
        if pid.parse::<u32>().ok() != Some(std::process::id()) {
            return None;
        }
    }
    (usec > 0).then(|| Duration::from_micros(usec))
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(err) = sd_notify::notify(false, states) {
        tracing::debug!(error = %err, "Could not notify systemd");
    }
}
