//! SQLite persistence shared by the services: one database file per service under the
//! data directory (WAL, foreign keys on, a busy timeout instead of "database is locked"),
//! or a private in-memory database for `--in-memory` and tests.

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use sqlx::SqlitePool;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};

/// Where a service keeps its state.
#[derive(Clone, Debug)]
pub enum Storage {
    /// Files under this directory (created if missing).
    Disk(PathBuf),
    /// Nothing touches the disk; everything is gone when the process exits.
    Memory,
}

impl Storage {
    pub fn data_dir(&self) -> Option<&Path> {
        match self {
            Storage::Disk(dir) => Some(dir),
            Storage::Memory => None,
        }
    }
}

/// Opens (creating if needed) the database `name` and applies `migrator`.
pub async fn open(
    storage: &Storage,
    name: &str,
    migrator: &Migrator,
) -> Result<SqlitePool, crate::Error> {
    let pool = match storage {
        Storage::Disk(dir) => {
            std::fs::create_dir_all(dir).map_err(|e| crate::Error::io(dir, e))?;
            let options = SqliteConnectOptions::new()
                .filename(dir.join(format!("{name}.db")))
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                // WAL + NORMAL: a committed transaction survives a killed process.
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            SqlitePoolOptions::new()
                .max_connections(4)
                .connect_with(options)
                .await?
        }
        Storage::Memory => {
            let options = SqliteConnectOptions::from_str("sqlite::memory:")?.foreign_keys(true);
            // An in-memory database lives exactly as long as its one connection: keep it
            // forever and never open a second (which would see an empty database).
            SqlitePoolOptions::new()
                .min_connections(1)
                .max_connections(1)
                .idle_timeout(None)
                .max_lifetime(None)
                .connect_with(options)
                .await?
        }
    };
    migrator.run(&pool).await?;
    Ok(pool)
}

/// True when the database answers a trivial query (used by `/health`).
pub async fn is_healthy(pool: &SqlitePool) -> bool {
    sqlx::query_scalar::<_, i64>("SELECT 1")
        .fetch_one(pool)
        .await
        .is_ok()
}
