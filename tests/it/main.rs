//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod audit;
mod bad_input;
mod calendar_shapes;
mod cli_rooms;
mod deploy;
mod dry_run;
mod ews_client;
mod ews_requests;
mod faults_db;
mod faults_ews;
mod faults_process;
mod notify;
mod pipeline;
mod process;
mod resync;
mod rules;
mod scale;
mod service_ops;
mod sim_core;
mod sim_exchangelib;
mod sim_extras;
mod sim_schema;
mod store_api;
mod support;
mod xsd_harness;
