//! Readiness follows the database: `eventbus.v1.EventBusService` is reported NOT_SERVING through
//! `grpc.health.v1` while the database cannot be reached, and SERVING again once it answers.
//! The server as a whole (service `""`) stays SERVING while the process runs: that is liveness,
//! and restarting the process would not bring the database back.
//!
//! The probe is `SELECT 1` on a connection of the read pool ([`Store::ping`]), bounded by the
//! database timeout, every [`PROBE_INTERVAL`]. It takes [`FAILURES_TO_NOT_SERVING`] failed probes
//! in a row to report NOT_SERVING, so one slow answer under load does not take the replica out,
//! and one answered probe to report SERVING again. A failed probe is confirmed by another at
//! once, so an outage is reported within about twice the database timeout.
//!
//! The same state is published on a watch channel for HTTP's `GET /readyz` ([`crate::http`]).
//!
//! Hazard: once the server drains, the probes stop and the service stays NOT_SERVING.

use std::time::Duration;

use eventbus_client::pb::event_bus_service_server::EventBusServiceServer;
use eventbus_engine::store::Store;
use tokio::sync::{oneshot, watch};
use tonic_health::server::HealthReporter;

use crate::EventBus;

/// How often the database is probed while it answers.
pub const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// Failed probes in a row after which the service is reported NOT_SERVING.
pub const FAILURES_TO_NOT_SERVING: u32 = 2;

/// What the probes said so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Readiness {
    Serving,
    /// Still SERVING, after this many failed probes in a row (fewer than
    /// [`FAILURES_TO_NOT_SERVING`]).
    Failing(u32),
    NotServing,
}

impl Readiness {
    /// Returns the state after a probe that `answered` or not.
    fn after(self, answered: bool) -> Self {
        let failures = match (self, answered) {
            (_, true) => return Self::Serving,
            (Self::NotServing, false) => return Self::NotServing,
            (Self::Serving, false) => 1,
            (Self::Failing(n), false) => n + 1,
        };
        if failures >= FAILURES_TO_NOT_SERVING { Self::NotServing } else { Self::Failing(failures) }
    }

    fn serving(self) -> bool {
        self != Self::NotServing
    }

    /// Returns how long to wait before the next probe: none to confirm a failure.
    fn next_probe(self) -> Duration {
        match self {
            Self::Failing(_) => Duration::ZERO,
            Self::Serving | Self::NotServing => PROBE_INTERVAL,
        }
    }
}

/// Probes the database and reports the event bus service SERVING or NOT_SERVING accordingly
/// (also as `true` or `false` on `ready`), until `drain` fires or is dropped; then reports it
/// NOT_SERVING and returns.
pub(crate) async fn follow_database(
    store: Store,
    reporter: HealthReporter,
    ready: watch::Sender<bool>,
    mut drain: oneshot::Receiver<()>,
) {
    let mut state = Readiness::Serving;
    loop {
        let answered = tokio::select! {
            result = store.ping() => result.inspect_err(|e| tracing::debug!(error = %e, "database probe failed")).is_ok(),
            _ = &mut drain => break,
        };
        let next = state.after(answered);
        if next.serving() != state.serving() {
            ready.send_replace(next.serving());
            if next.serving() {
                tracing::info!("the database answers again: serving");
                reporter.set_serving::<EventBusServiceServer<EventBus>>().await;
            } else {
                tracing::warn!(failures = FAILURES_TO_NOT_SERVING, "the database cannot be reached: not serving");
                reporter.set_not_serving::<EventBusServiceServer<EventBus>>().await;
            }
        }
        state = next;
        tokio::select! {
            () = tokio::time::sleep(state.next_probe()) => {}
            _ = &mut drain => break,
        }
    }
    ready.send_replace(false);
    reporter.set_not_serving::<EventBusServiceServer<EventBus>>().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readiness_needs_two_failures_to_go_and_one_answer_to_come_back() {
        use Readiness::{Failing, NotServing, Serving};
        let cases = [
            (Serving, true, Serving),
            (Serving, false, Failing(1)),
            (Failing(1), true, Serving),
            (Failing(1), false, NotServing),
            (NotServing, false, NotServing),
            (NotServing, true, Serving),
        ];
        for (before, answered, after) in cases {
            assert_eq!(before.after(answered), after, "{before:?} after a probe that answered: {answered}");
        }
        assert_eq!(FAILURES_TO_NOT_SERVING, 2);
        assert_eq!(Failing(1).next_probe(), Duration::ZERO, "a failure is confirmed at once");
        assert_eq!((Serving.next_probe(), NotServing.next_probe()), (PROBE_INTERVAL, PROBE_INTERVAL));
    }
}
