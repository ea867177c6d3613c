//! The sync pipeline: listener, bounded coalescing queue and workers.
