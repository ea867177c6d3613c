//! The sync pipeline: listener, bounded coalescing queue and workers.
//!
//! Streaming events, catch-up requests and resyncs all become entries of one
//! [`queue::WorkQueue`]; workers turn each entry into one sync pass for the mailbox.

pub mod ews_source;
pub mod listener;
pub mod queue;
pub mod resync;
pub mod rooms;
pub mod slots;
pub mod source;
pub mod worker;
