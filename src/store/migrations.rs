//! Schema migrations: the `schema/V{n}__{what}.sql` files, embedded in the binary and
//! applied in order, each in its own transaction, recorded in `schema_migrations` with
//! a checksum so that an edited migration is caught instead of silently skipped.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use super::{PgStore, StoreError};

/// How the database schema compares with the migrations this build carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SchemaStatus {
    /// Every migration is applied, and nothing else.
    Current,
    /// Some migrations are not applied yet: run `migrate`.
    Outdated {
        /// Names of the missing migrations, in order.
        pending: Vec<String>,
    },
    /// The database has migrations this build does not know (a newer release ran).
    Newer {
        /// Names of the unknown migrations.
        unknown: Vec<String>,
    },
}

/// One embedded migration.
struct Migration {
    version: i32,
    name: &'static str,
    sql: &'static str,
}

/// Every migration, in order. Never edit an entry once released: add a new one.
const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "V1__booking_tables",
        sql: include_str!("../../schema/V1__booking_tables.sql"),
    },
    Migration {
        version: 2,
        name: "V2__sync_state",
        sql: include_str!("../../schema/V2__sync_state.sql"),
    },
    Migration {
        version: 3,
        name: "V3__resync_notes",
        sql: include_str!("../../schema/V3__resync_notes.sql"),
    },
    Migration {
        version: 4,
        name: "V4__services_issues_audit",
        sql: include_str!("../../schema/V4__services_issues_audit.sql"),
    },
    Migration {
        version: 5,
        name: "V5__digest_claims",
        sql: include_str!("../../schema/V5__digest_claims.sql"),
    },
    Migration {
        version: 6,
        name: "V6__plan_issue_scope",
        sql: include_str!("../../schema/V6__plan_issue_scope.sql"),
    },
    Migration {
        version: 7,
        name: "V7__polled_rooms",
        sql: include_str!("../../schema/V7__polled_rooms.sql"),
    },
    Migration {
        version: 8,
        name: "V8__exception_versions",
        sql: include_str!("../../schema/V8__exception_versions.sql"),
    },
];

/// Serialises concurrent `migrate` runs (any fixed 64-bit number would do).
const MIGRATION_LOCK_KEY: i64 = 0x626f_6f6b_696e_6731;

const CREATE_MIGRATIONS_TABLE: &str = "\
    CREATE TABLE IF NOT EXISTS schema_migrations ( \
        version    integer PRIMARY KEY, \
        name       text NOT NULL, \
        checksum   text NOT NULL, \
        applied_at timestamptz NOT NULL DEFAULT now() \
    )";

impl Migration {
    fn checksum(&self) -> String {
        Sha256::digest(self.sql.as_bytes())
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect()
    }
}

impl PgStore {
    /// Applies every migration not applied yet, in order; returns the names of those
    /// applied now (empty when the schema was current).
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaConflict`] when an applied migration's checksum differs
    /// from the embedded one, [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut applied = Vec::new();
        for migration in MIGRATIONS {
            if self.apply_migration(migration).await? {
                tracing::info!(migration = migration.name, "Applied a schema migration");
                applied.push(migration.name.to_owned());
            }
        }
        Ok(applied)
    }

    /// Compares the database schema with the embedded migrations.
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaConflict`] when an applied migration's checksum differs,
    /// [`StoreError::Unavailable`] or [`StoreError::Database`].
    pub async fn schema_status(&self) -> Result<SchemaStatus, StoreError> {
        const TABLE_EXISTS: &str = "SELECT to_regclass('schema_migrations') IS NOT NULL";
        const APPLIED: &str = "SELECT version, name, checksum FROM schema_migrations";
        let rows = self
            .retrying(|client, _| async move {
                let exists: bool = client.query_one(TABLE_EXISTS, &[]).await?.try_get(0)?;
                if exists {
                    Ok(Some(client.query(APPLIED, &[]).await?))
                } else {
                    Ok(None)
                }
            })
            .await?;
        let mut applied = HashMap::new();
        for row in rows.iter().flatten() {
            let version: i32 = row.try_get(0)?;
            let name: String = row.try_get(1)?;
            let checksum: String = row.try_get(2)?;
            applied.insert(version, (name, checksum));
        }
        status_of(&applied)
    }

    /// Fails with [`StoreError::SchemaOutdated`] unless every embedded migration is
    /// applied (a newer schema is accepted).
    ///
    /// # Errors
    ///
    /// [`StoreError::SchemaOutdated`], or what [`PgStore::schema_status`] returns.
    pub async fn require_current_schema(&self) -> Result<(), StoreError> {
        match self.schema_status().await? {
            SchemaStatus::Outdated { pending } => Err(StoreError::SchemaOutdated { pending }),
            SchemaStatus::Current | SchemaStatus::Newer { .. } => Ok(()),
        }
    }

    /// Applies one migration unless already applied; `true` when applied now.
    async fn apply_migration(&self, migration: &'static Migration) -> Result<bool, StoreError> {
        const LOCK: &str = "SELECT pg_advisory_xact_lock($1)";
        const FIND: &str = "SELECT checksum FROM schema_migrations WHERE version = $1";
        const RECORD: &str =
            "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)";
        let checksum = migration.checksum();
        let checksum = checksum.as_str();
        self.retrying(|mut client, _| async move {
            let tx = client.transaction().await?;
            tx.execute(LOCK, &[&MIGRATION_LOCK_KEY]).await?;
            tx.batch_execute(CREATE_MIGRATIONS_TABLE).await?;
            if let Some(row) = tx.query_opt(FIND, &[&migration.version]).await? {
                let stored: String = row.try_get(0)?;
                return if stored == checksum {
                    Ok(false)
                } else {
                    Err(StoreError::SchemaConflict {
                        name: migration.name.to_owned(),
                    })
                };
            }
            tx.batch_execute(migration.sql).await?;
            tx.execute(RECORD, &[&migration.version, &migration.name, &checksum])
                .await?;
            tx.commit().await?;
            Ok(true)
        })
        .await
    }
}

/// Compares applied migrations (version -> name, checksum) with the embedded ones.
fn status_of(applied: &HashMap<i32, (String, String)>) -> Result<SchemaStatus, StoreError> {
    for migration in MIGRATIONS {
        if let Some((_, checksum)) = applied.get(&migration.version) {
            if *checksum != migration.checksum() {
                return Err(StoreError::SchemaConflict {
                    name: migration.name.to_owned(),
                });
            }
        }
    }
    let mut unknown: Vec<(i32, String)> = applied
        .iter()
        .filter(|(version, _)| !MIGRATIONS.iter().any(|known| known.version == **version))
        .map(|(version, (name, _))| (*version, name.clone()))
        .collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Ok(SchemaStatus::Newer {
            unknown: unknown.into_iter().map(|(_, name)| name).collect(),
        });
    }
    let pending: Vec<String> = MIGRATIONS
        .iter()
        .filter(|migration| !applied.contains_key(&migration.version))
        .map(|migration| migration.name.to_owned())
        .collect();
    if pending.is_empty() {
        Ok(SchemaStatus::Current)
    } else {
        Ok(SchemaStatus::Outdated { pending })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_named_after_their_version() {
        for (index, migration) in MIGRATIONS.iter().enumerate() {
            let expected = i32::try_from(index + 1).expect("few migrations");
            assert_eq!(migration.version, expected);
            assert!(
                migration.name.starts_with(&format!("V{expected}__")),
                "{}",
                migration.name
            );
        }
    }

    #[test]
    fn an_edited_migration_is_a_conflict() {
        let applied = HashMap::from([(1, ("V1__booking_tables".to_owned(), "0".repeat(64)))]);

        let status = status_of(&applied);

        assert!(
            matches!(&status, Err(StoreError::SchemaConflict { name }) if name == "V1__booking_tables"),
            "{status:?}"
        );
    }

    #[test]
    fn an_unknown_applied_migration_means_a_newer_schema() {
        let mut applied: HashMap<i32, (String, String)> = MIGRATIONS
            .iter()
            .map(|migration| {
                (
                    migration.version,
                    (migration.name.to_owned(), migration.checksum()),
                )
            })
            .collect();
        applied.insert(99, ("V99__future".to_owned(), "f".repeat(64)));

        let status = status_of(&applied).expect("no conflict");

        assert_eq!(
            status,
            SchemaStatus::Newer {
                unknown: vec!["V99__future".to_owned()]
            }
        );
    }
}
