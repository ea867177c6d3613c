//! The store's error type and the rule that sorts database failures into "try again
//! later" and "stop and look".

use std::error::Error as StdError;
use std::io;

use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

use super::RoomId;

/// A boxed error kept as the source of [`StoreError::Unavailable`].
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Why a store operation failed, one variant per decision the caller makes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be reached or gave up for a passing reason (connection
    /// lost, restart, serialization failure, deadlock, pool wait timeout) even after
    /// retries: keep the work and try again later.
    #[error("the database is unavailable")]
    Unavailable(#[source] BoxError),
    /// The mailbox checkpoint moved since the batch was computed: nothing was written;
    /// recompute the changes from the stored checkpoint.
    #[error("the sync checkpoint of room {room} moved since the changes were computed")]
    CheckpointMoved {
        /// The room whose checkpoint moved.
        room: RoomId,
    },
    /// The schema lacks migrations this build needs: run `booking-sync migrate`.
    #[error("the database schema is out of date; run `booking-sync migrate`")]
    SchemaOutdated {
        /// Names of the migrations not applied yet.
        pending: Vec<String>,
    },
    /// An applied migration differs from the one this build carries: stop, a person
    /// must reconcile the database with the release.
    #[error("applied migration {name} differs from the one this build carries")]
    SchemaConflict {
        /// Name of the migration whose checksum differs.
        name: String,
    },
    /// The database refused the operation for a lasting reason (constraint, permission,
    /// read-only database, bad data): stop and alert.
    #[error("the database rejected the operation")]
    Database(#[source] tokio_postgres::Error),
    /// The room, user or row asked for does not exist.
    #[error("{0} does not exist")]
    NotFound(String),
}

impl StoreError {
    /// Whether retrying later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

impl StoreError {
    /// The class of a transient failure, for the retry counter's `class` label (one of
    /// `metrics::DB_RETRY_CLASSES`).
    pub fn retry_class(&self) -> &'static str {
        let Self::Unavailable(source) = self else {
            return "other";
        };
        let mut cause: Option<&(dyn StdError + 'static)> = Some(source.as_ref());
        while let Some(err) = cause {
            if let Some(pg) = err.downcast_ref::<tokio_postgres::Error>() {
                return match pg.code() {
                    Some(state)
                        if *state == SqlState::T_R_SERIALIZATION_FAILURE
                            || *state == SqlState::T_R_DEADLOCK_DETECTED =>
                    {
                        "serialization"
                    }
                    Some(state) if *state == SqlState::QUERY_CANCELED => "timeout",
                    _ => "connection",
                };
            }
            if let Some(PoolError::Timeout(_)) = err.downcast_ref::<PoolError>() {
                return "timeout";
            }
            if err.is::<super::AttemptTimedOut>() {
                return "timeout";
            }
            cause = err.source();
        }
        "connection"
    }
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        if is_transient(&err) {
            Self::Unavailable(Box::new(err))
        } else {
            Self::Database(err)
        }
    }
}

impl From<PoolError> for StoreError {
    fn from(err: PoolError) -> Self {
        match err {
            PoolError::Backend(err) => err.into(),
            // Wait, create and recycle timeouts and a closed pool all mean "not now".
            other => Self::Unavailable(Box::new(other)),
        }
    }
}

/// SQLSTATE codes that name a passing condition: serialization failure, deadlock,
/// server shutting down or starting, too many connections, statement timeout.
const TRANSIENT_STATES: &[SqlState] = &[
    SqlState::T_R_SERIALIZATION_FAILURE,
    SqlState::T_R_DEADLOCK_DETECTED,
    SqlState::ADMIN_SHUTDOWN,
    SqlState::CRASH_SHUTDOWN,
    SqlState::CANNOT_CONNECT_NOW,
    SqlState::TOO_MANY_CONNECTIONS,
    SqlState::QUERY_CANCELED,
];

/// Class 08: connection exceptions.
const CONNECTION_EXCEPTION_CLASS: &str = "08";

/// Whether a database error is worth retrying on a fresh connection.
fn is_transient(err: &tokio_postgres::Error) -> bool {
    if let Some(state) = err.code() {
        return TRANSIENT_STATES.contains(state)
            || state.code().starts_with(CONNECTION_EXCEPTION_CLASS);
    }
    if err.is_closed() {
        return true;
    }
    // Without a SQLSTATE the error came from the client side: only I/O failures
    // (reset, refused, timed out) pass; conversion errors are lasting.
    let mut source = err.source();
    while let Some(cause) = source {
        if cause.is::<io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_timeouts_count_as_unavailable() {
        let err = StoreError::from(PoolError::Timeout(deadpool_postgres::TimeoutType::Wait));

        assert!(err.is_transient());
    }

    #[test]
    fn transient_states_include_the_connection_exception_class() {
        assert!(SqlState::CONNECTION_FAILURE
            .code()
            .starts_with(CONNECTION_EXCEPTION_CLASS));
        assert!(!SqlState::UNIQUE_VIOLATION
            .code()
            .starts_with(CONNECTION_EXCEPTION_CLASS));
        assert!(TRANSIENT_STATES.contains(&SqlState::T_R_DEADLOCK_DETECTED));
        assert!(!TRANSIENT_STATES.contains(&SqlState::READ_ONLY_SQL_TRANSACTION));
    }
}
