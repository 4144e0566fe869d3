//! The simulated clock.
//!
//! Every expiry in every service (tokens, secrets, soft-delete windows, vault credentials)
//! reads this clock instead of the system clock, so tests cross days in milliseconds. It is
//! real time plus an offset; the offset is persisted (atomically) in the data directory so
//! a restart does not travel back in time.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug)]
pub struct SimClock {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    offset_ms: AtomicI64,
    persist_to: Option<PathBuf>,
    /// Serialises persistence so concurrent moves cannot leave an older offset on disk.
    write_lock: std::sync::Mutex<()>,
}

#[derive(Serialize, Deserialize)]
struct Persisted {
    offset_ms: i64,
}

/// Why a clock move was refused.
#[derive(Debug, thiserror::Error)]
pub enum ClockError {
    #[error("advanceSeconds must not be negative; use `set` to move the clock to an earlier time")]
    NegativeAdvance,
    #[error("the requested time is outside the supported range")]
    OutOfRange,
    #[error("could not persist the clock offset: {0}")]
    Persist(String),
}

impl SimClock {
    /// A clock that keeps its offset in memory only.
    pub fn in_memory() -> Self {
        Self::with_offset(0, None)
    }

    /// A clock whose offset lives in `dir/clock.json` (created on the first move).
    pub fn persistent(dir: impl Into<PathBuf>) -> Result<Self, crate::Error> {
        let path = dir.into().join("clock.json");
        let offset_ms = match std::fs::read(&path) {
            Ok(bytes) => {
                serde_json::from_slice::<Persisted>(&bytes)
                    .map_err(|e| {
                        crate::Error::Config(format!("{} is corrupt: {e}", path.display()))
                    })?
                    .offset_ms
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(crate::Error::io(&path, e)),
        };
        Ok(Self::with_offset(offset_ms, Some(path)))
    }

    fn with_offset(offset_ms: i64, persist_to: Option<PathBuf>) -> Self {
        SimClock {
            inner: Arc::new(Inner {
                offset_ms: AtomicI64::new(offset_ms),
                persist_to,
                write_lock: std::sync::Mutex::new(()),
            }),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        Utc::now() + TimeDelta::milliseconds(self.inner.offset_ms.load(Ordering::Relaxed))
    }

    /// Seconds since the Unix epoch on the simulated clock.
    pub fn unix(&self) -> i64 {
        self.now().timestamp()
    }

    pub fn offset_seconds(&self) -> i64 {
        self.inner.offset_ms.load(Ordering::Relaxed) / 1000
    }

    pub fn advance(&self, seconds: i64) -> Result<DateTime<Utc>, ClockError> {
        if seconds < 0 {
            return Err(ClockError::NegativeAdvance);
        }
        let delta = TimeDelta::try_seconds(seconds).ok_or(ClockError::OutOfRange)?;
        let target = self
            .now()
            .checked_add_signed(delta)
            .ok_or(ClockError::OutOfRange)?;
        self.set(target)
    }

    /// Moves the clock so that `now()` reads `at` (forwards or backwards).
    pub fn set(&self, at: DateTime<Utc>) -> Result<DateTime<Utc>, ClockError> {
        let offset = (at - Utc::now()).num_milliseconds();
        let _guard = self
            .inner
            .write_lock
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(path) = &self.inner.persist_to {
            write_atomically(path, &Persisted { offset_ms: offset })
                .map_err(|e| ClockError::Persist(e.to_string()))?;
        }
        self.inner.offset_ms.store(offset, Ordering::Relaxed);
        Ok(self.now())
    }
}

fn write_atomically(path: &std::path::Path, value: &Persisted) -> std::io::Result<()> {
    let tmp = path.with_extension("json.tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).expect("plain struct serialises"),
    )?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advance_moves_forward_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let clock = SimClock::persistent(dir.path()).unwrap();
        let before = clock.unix();
        clock.advance(30 * 86_400).unwrap();
        assert!(clock.unix() - before >= 30 * 86_400);
        let reopened = SimClock::persistent(dir.path()).unwrap();
        assert_eq!(reopened.offset_seconds(), clock.offset_seconds());
    }

    #[test]
    fn negative_advance_is_refused() {
        let clock = SimClock::in_memory();
        assert!(matches!(
            clock.advance(-1),
            Err(ClockError::NegativeAdvance)
        ));
        assert_eq!(clock.offset_seconds(), 0);
    }

    #[test]
    fn set_can_go_backwards() {
        let clock = SimClock::in_memory();
        let past = Utc::now() - TimeDelta::days(2);
        clock.set(past).unwrap();
        assert!((clock.now() - past).num_seconds().abs() <= 1);
    }
}
