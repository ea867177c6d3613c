//! The JSON control API under `/_sim/` (documented in `docs/simulator.md`).
//!
//! Each route maps to one [`SimControl`] operation; errors answer 4xx with
//! `{"error": "..."}` naming what was wrong. Paths and field names are stable: tests,
//! the demo and benchmarks script the simulator through them.

use std::sync::Arc;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post};
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::json;

use super::{
    AppointmentPatch, DeleteMode, NewAppointment, NewMailbox, SimControl, SimError, SimState,
    Workload,
};

/// The control routes.
pub fn routes(state: Arc<SimState>) -> Router {
    Router::new()
        .route("/_sim/health", get(health))
        .route("/_sim/mailboxes", get(list_mailboxes).post(add_mailbox))
        .route(
            "/_sim/mailboxes/{email}/appointments",
            get(list_appointments).post(create_appointment),
        )
        .route(
            "/_sim/mailboxes/{email}/appointments/{uid}",
            patch(update_appointment).delete(delete_appointment),
        )
        .route(
            "/_sim/mailboxes/{email}/appointments/{uid}/cancel",
            post(cancel_appointment),
        )
        .route("/_sim/workload", post(run_workload))
        .route("/_sim/stats", get(stats))
        .with_state(state)
}

/// An error answer: status and `{"error": message}`.
#[derive(Debug)]
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<SimError> for ApiError {
    fn from(err: SimError) -> Self {
        let status = match err {
            SimError::Invalid(_) => StatusCode::BAD_REQUEST,
            SimError::NotFound(_) => StatusCode::NOT_FOUND,
            SimError::Conflict(_) => StatusCode::CONFLICT,
        };
        Self(status, err.to_string())
    }
}

impl From<JsonRejection> for ApiError {
    fn from(err: JsonRejection) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            format!("invalid JSON body: {}", err.body_text()),
        )
    }
}

impl From<QueryRejection> for ApiError {
    fn from(err: QueryRejection) -> Self {
        Self(
            StatusCode::BAD_REQUEST,
            format!("invalid query: {}", err.body_text()),
        )
    }
}

fn control(state: Arc<SimState>) -> SimControl {
    SimControl::from_state(state)
}

async fn health() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

async fn list_mailboxes(State(state): State<Arc<SimState>>) -> Response {
    Json(control(state).mailboxes()).into_response()
}

async fn add_mailbox(
    State(state): State<Arc<SimState>>,
    body: Result<Json<NewMailbox>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(mailbox) = body?;
    let email = mailbox.email.clone();
    control(state).add_mailbox(mailbox)?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "email": email.to_ascii_lowercase() })),
    )
        .into_response())
}

async fn create_appointment(
    State(state): State<Arc<SimState>>,
    Path(email): Path<String>,
    body: Result<Json<NewAppointment>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(appointment) = body?;
    let reference = control(state).create_appointment(&email, appointment)?;
    Ok((StatusCode::CREATED, Json(reference)).into_response())
}

async fn update_appointment(
    State(state): State<Arc<SimState>>,
    Path((email, uid)): Path<(String, String)>,
    body: Result<Json<AppointmentPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(patch) = body?;
    let reference = control(state).update_appointment(&email, &uid, patch)?;
    Ok(Json(reference).into_response())
}

/// Query of `DELETE .../appointments/{uid}`.
#[derive(Debug, Deserialize)]
struct DeleteQuery {
    mode: Option<DeleteMode>,
    occurrence_start: Option<DateTime<Utc>>,
}

async fn delete_appointment(
    State(state): State<Arc<SimState>>,
    Path((email, uid)): Path<(String, String)>,
    query: Result<Query<DeleteQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(query) = query?;
    control(state).delete_appointment(
        &email,
        &uid,
        query.mode.unwrap_or(DeleteMode::Soft),
        query.occurrence_start,
    )?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn cancel_appointment(
    State(state): State<Arc<SimState>>,
    Path((email, uid)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let reference = control(state).cancel_appointment(&email, &uid)?;
    Ok(Json(reference).into_response())
}

/// Query of `GET .../appointments`.
#[derive(Debug, Deserialize)]
struct WindowQuery {
    from: DateTime<Utc>,
    to: DateTime<Utc>,
}

async fn list_appointments(
    State(state): State<Arc<SimState>>,
    Path(email): Path<String>,
    query: Result<Query<WindowQuery>, QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(window) = query?;
    let entries = control(state).appointments(&email, window.from, window.to)?;
    Ok(Json(entries).into_response())
}

async fn run_workload(
    State(state): State<Arc<SimState>>,
    body: Result<Json<Workload>, JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(workload) = body?;
    let control = control(state.clone());
    if workload.wait {
        let report = control.run_workload(workload).await?;
        return Ok(Json(report).into_response());
    }
    super::workload::validate(&control, &workload)?;
    state.tasks.spawn(async move {
        if let Err(err) = control.run_workload(workload).await {
            tracing::warn!(error = %err, "Background workload failed");
        }
    });
    Ok((StatusCode::ACCEPTED, Json(json!({ "status": "started" }))).into_response())
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    Json(control(state).stats()).into_response()
}
