//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod ews_client;
mod ews_requests;
mod pipeline;
mod process;
mod rules;
mod sim_core;
mod sim_exchangelib;
mod sim_extras;
mod sim_schema;
mod store_api;
mod support;
mod xsd_harness;
