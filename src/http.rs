//! The service's HTTP listener: `/metrics`, `/healthz` and `/readyz`.
//!
//! Bound to the configured address only (loopback by default). `/healthz` says the
//! process answers; `/readyz` says it is doing its job ([`Health::readiness`]: the
//! database answers with a current schema, the streams cover every enabled room, no
//! core loop is stalled) and names the first reason when it is not.

use std::net::SocketAddr;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::health::Health;
use crate::metrics as m;

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    /// Renders the Prometheus text format.
    pub metrics: PrometheusHandle,
    /// For readiness and the sampled gauges.
    pub health: Health,
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
    crate::supervisor::sample(&state.health);
    let ready = state.health.readiness().await.is_ok();
    metrics::gauge!(m::READY).set(if ready { 1.0 } else { 0.0 });
    state.metrics.render()
}

async fn ready(State(state): State<HttpState>) -> (StatusCode, String) {
    let readiness = state.health.readiness().await;
    metrics::gauge!(m::READY).set(if readiness.is_ok() { 1.0 } else { 0.0 });
    match readiness {
        Ok(summary) => (StatusCode::OK, format!("{summary}\n")),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, format!("{reason}\n")),
    }
}
