//! booking-sync: keeps a meeting-room booking database in step with Microsoft Exchange.
//!
//! See `ARCHITECTURE.md` for the map of modules and the data flow.

pub mod app;
pub mod backoff;
pub mod checker;
pub mod cli;
pub mod config;
pub mod demo;
pub mod domain;
pub mod ews;
pub mod health;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod pgtemp;
pub mod pipeline;
pub mod recurrence;
pub mod rules;
pub mod sim;
pub mod store;
pub mod supervisor;
pub mod sync;
pub mod systemd;
pub mod tz;
