//! The service's HTTP listener: `/metrics`, `/healthz` and `/readyz`.
//!
//! Bound to the configured address only (loopback by default). `/healthz` says the
//! process answers; `/readyz` says it is doing its job: the database answers with a
//! current schema and every enabled room has finished its initial sync.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::pipeline::queue::WorkQueue;
use crate::pipeline::rooms::RoomDirectory;
use crate::store::{PgStore, SchemaStatus};

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the Prometheus text format.
    pub metrics: PrometheusHandle,
    /// For the readiness check.
    pub store: PgStore,
    /// For the lag gauge.
    pub queue: Arc<WorkQueue>,
    /// For the coverage check.
    pub rooms: Arc<RoomDirectory>,
}

/// Binds `listen` and serves until `cancel` fires; returns the bound address.
///
/// # Errors
/// When the address cannot be bound.
pub async fn spawn(
    listen: SocketAddr,
    state: HttpState,
    tracker: &TaskTracker,
    cancel: CancellationToken,
) -> std::io::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(state);
    tracker.spawn(async move {
        let server = axum::serve(listener, app).with_graceful_shutdown(cancel.cancelled_owned());
        if let Err(err) = server.await {
            tracing::error!(error = %err, "HTTP listener failed");
        }
    });
    Ok(addr)
}

async fn metrics(State(state): State<HttpState>) -> String {
    let lag = state
        .queue
        .oldest_event_at()
        .map_or(0.0, |at| at.elapsed().as_secs_f64());
    metrics::gauge!(crate::metrics::SYNC_LAG).set(lag);
    metrics::gauge!(crate::metrics::QUEUE_DEPTH).set(state.queue.len() as f64);
    state.metrics.render()
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    match state.store.schema_status().await {
        Ok(SchemaStatus::Current) => {}
        Ok(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "database schema is not current\n".into(),
            )
        }
        Err(_) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "database unreachable\n".into(),
            )
        }
    }
    let (enabled, complete) = state.rooms.counts();
    if complete < enabled {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("initial sync complete for {complete} of {enabled} rooms\n"),
        );
    }
    (StatusCode::OK, format!("ready: {enabled} rooms in sync\n"))
}
