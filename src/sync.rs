//! Small helpers for the standard library's locks.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks `mutex`, carrying on past a poisoned lock: the sections guarded this way
/// are short and leave the data consistent at every step, so a panic elsewhere
/// must not take the data with it.
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
