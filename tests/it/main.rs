//! Integration tests: one binary, against real PostgreSQL and the bundled simulator.

mod support;
mod xsd_harness;
