//! `booking-sync resync`: one incremental or full resync now, of every enabled room
//! or of one, with progress on stderr.

use std::sync::Arc;

use anyhow::{bail, Context};
use chrono::Utc;
use serde::Serialize;
use tokio::time::Instant;

use super::progress::Progress;
use crate::app;
use crate::config::Config;
use crate::domain::MailboxAddress;
use crate::ews::EwsClient;
use crate::logging::error_chain;
use crate::pipeline::queue::WorkQueue;
use crate::pipeline::resync::Resync;
use crate::pipeline::rooms::RoomDirectory;
use crate::store::PgStore;

/// What to resync.
#[derive(Debug, Clone, Default)]
pub struct ResyncOptions {
    /// Only this room (it must be enabled).
    pub room: Option<MailboxAddress>,
    /// Full reconciliation (series rolled to the window, CalendarView compared with
    /// the table)
    /// instead of an incremental catch-up.
    pub full: bool,
}

/// What the resync did.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct ResyncSummary {
    /// Rooms resynced.
    pub rooms: usize,
    /// Rooms whose resync failed.
    pub failed: usize,
    /// Changes an incremental resync found.
    pub changes: u64,
    /// Differences a full reconciliation repaired.
    pub drift: u64,
    /// Seconds it took.
    pub seconds: f64,
}

/// Runs one resync now, beside a running service or without one.
///
/// # Errors
/// When the database or the EWS client cannot be set up, or the room is not enabled.
pub async fn run(
    config: &Config,
    store: &PgStore,
    options: &ResyncOptions,
) -> anyhow::Result<ResyncSummary> {
    let mut rooms = store.enabled_rooms().await.context("reading the rooms")?;
    if let Some(wanted) = &options.room {
        rooms.retain(|room| &room.email == wanted);
        if rooms.is_empty() {
            bail!("{wanted} is not an enabled room: see `booking-sync rooms list`");
        }
    }
    let ews = EwsClient::new(app::ews_config(config)).context("setting up the EWS client")?;
    let directory = Arc::new(RoomDirectory::default());
    directory.replace(rooms.clone());
    let queue = Arc::new(WorkQueue::new(
        config.pipeline.queue_capacity,
        config.pipeline.coalesce_window,
    ));
    let resync = Resync {
        workers: Arc::new(app::workers(config, ews, store.clone(), queue, directory)),
        settings: app::resync_settings(config),
    };
    let started = Instant::now();
    let mut summary = ResyncSummary {
        rooms: rooms.len(),
        ..ResyncSummary::default()
    };
    if options.full {
        let now = Utc::now();
        let mut progress = Progress::new("full resync", rooms.len());
        resync
            .reconcile_all(now, |room, result| {
                match result {
                    Ok(report) => summary.drift += report.drift(),
                    Err(_) => summary.failed += 1,
                }
                progress.advance(
                    room.email.as_str(),
                    &outcome(result.as_ref().map(|r| format!("drift {}", r.drift()))),
                );
            })
            .await;
        progress.finish();
    } else {
        let mut progress = Progress::new("resync", rooms.len());
        resync
            .catch_up_all(|room, result| {
                match result {
                    Ok(report) => summary.changes += report.changes,
                    Err(_) => summary.failed += 1,
                }
                progress.advance(
                    room.email.as_str(),
                    &outcome(result.as_ref().map(|r| format!("{} changes", r.changes))),
                );
            })
            .await;
        progress.finish();
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn outcome<E: std::error::Error>(result: Result<String, &E>) -> String {
    match result {
        Ok(text) => text,
        Err(err) => format!("failed: {}", error_chain(err)),
    }
}
