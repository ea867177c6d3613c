//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod store_api;
mod support;
mod xsd_harness;
