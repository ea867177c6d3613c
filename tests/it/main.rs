//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod sim_core;
mod support;
mod xsd_harness;
