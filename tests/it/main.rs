//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod sim_core;
mod sim_exchangelib;
mod sim_extras;
mod sim_schema;
mod support;
mod xsd_harness;
