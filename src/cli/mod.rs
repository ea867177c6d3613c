//! The administrator's commands: `rooms`, `status` and `resync`.
//!
//! `main` parses the command line and prints; the work and the wording live here so
//! tests reach them without a process. Nothing here runs inside the service.

pub mod progress;
pub mod resync;
pub mod rooms;
pub mod status;
