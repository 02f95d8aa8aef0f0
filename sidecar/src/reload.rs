//! Pricing shared by every request, and its reload from the pricing file without a restart.
//!
//! Three triggers re-read the file: SIGHUP ([`spawn_sighup_reload`]), `POST
//! /admin/pricing/reload`, and a change of the file's modification time or length, which
//! [`watch_pricing_file`] checks every [`POLL_INTERVAL`]. A reload that fails keeps the prices in
//! force, logs the error and returns it. A request takes one snapshot with
//! [`SharedPricing::current`] and prices its reserve or settle with it, so a reload never changes
//! prices in the middle of one computation.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, SystemTime};

use tokio::sync::Mutex;
use tokio::task::JoinHandle;

use crate::pricing::{Pricing, PricingError};

/// How often the binary checks the pricing file for a change: every 5 seconds.
pub const POLL_INTERVAL: Duration = Duration::from_secs(5);

/// Cause of a reload, which the log line names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadTrigger {
    /// The process received SIGHUP.
    Signal,
    /// A `POST /admin/pricing/reload` request.
    AdminApi,
    /// The file's modification time or length changed.
    FileChange,
}

impl fmt::Display for ReloadTrigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReloadTrigger::Signal => "SIGHUP",
            ReloadTrigger::AdminApi => "admin API",
            ReloadTrigger::FileChange => "file change",
        })
    }
}

/// Reason a reload left the prices unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The pricing was built from text, not read from a file.
    #[error("the pricing was not loaded from a file, so there is nothing to reload")]
    NoFile,
    /// The file cannot be read or is invalid.
    #[error(transparent)]
    Pricing(#[from] PricingError),
}

/// The pricing in force, shared by clones. A reload swaps the whole table, and a request keeps
/// the table that it took.
#[derive(Debug, Clone)]
pub struct SharedPricing {
    current: Arc<RwLock<Arc<Pricing>>>,
    file: Option<Arc<PricingFile>>,
}

/// The file that the pricing comes from.
#[derive(Debug)]
struct PricingFile {
    path: PathBuf,
    /// Stamp of the file when a load last read it. The lock also makes reloads run one at a
    /// time, so that the stamp always belongs to the last file read.
    last_read: Mutex<FileStamp>,
}

/// State of the pricing file that the poll compares to notice a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileStamp {
    /// The file's modification time and length.
    Present { modified: SystemTime, len: u64 },
    /// The file or its modification time cannot be read.
    Unreadable,
}

impl FileStamp {
    fn of(path: &Path) -> FileStamp {
        match std::fs::metadata(path) {
            Ok(metadata) => match metadata.modified() {
                Ok(modified) => FileStamp::Present {
                    modified,
                    len: metadata.len(),
                },
                Err(_) => FileStamp::Unreadable,
            },
            Err(_) => FileStamp::Unreadable,
        }
    }
}

impl SharedPricing {
    /// Wraps `pricing`, which has no file to reload from.
    pub fn new(pricing: Pricing) -> Self {
        SharedPricing {
            current: Arc::new(RwLock::new(Arc::new(pricing))),
            file: None,
        }
    }

    /// Loads the pricing file at `path`, which later reloads read again.
    pub fn load(path: &Path) -> Result<Self, PricingError> {
        // The stamp is taken before the read, so a write in between shows as a change later.
        let stamp = FileStamp::of(path);
        let pricing = Pricing::load(path)?;
        Ok(SharedPricing {
            current: Arc::new(RwLock::new(Arc::new(pricing))),
            file: Some(Arc::new(PricingFile {
                path: path.to_path_buf(),
                last_read: Mutex::new(stamp),
            })),
        })
    }

    /// Returns the table in force now.
    pub fn current(&self) -> Arc<Pricing> {
        // A panic while holding the lock cannot leave the Arc half-written, so a poisoned lock
        // still holds a valid table.
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Replaces the table for all later requests.
    pub fn replace(&self, pricing: Pricing) {
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = Arc::new(pricing);
    }

    /// Path of the pricing file, or `None` when the pricing was not loaded from a file.
    pub fn path(&self) -> Option<&Path> {
        self.file.as_deref().map(|file| file.path.as_path())
    }

    /// Reads the pricing file again and puts it in force. On failure the prices in force stay,
    /// and the error is logged and returned.
    pub async fn reload(&self, trigger: ReloadTrigger) -> Result<Arc<Pricing>, ReloadError> {
        let file = self.file.as_deref().ok_or(ReloadError::NoFile)?;
        let mut last_read = file.last_read.lock().await;
        self.reload_locked(file, &mut last_read, trigger).await
    }

    /// Reloads the pricing file when its modification time or length differs from the last
    /// read. Returns `None` when it is unchanged or there is no file.
    pub async fn reload_if_changed(&self) -> Option<Result<Arc<Pricing>, ReloadError>> {
        let file = self.file.as_deref()?;
        let mut last_read = file.last_read.lock().await;
        let path = file.path.clone();
        let stamp = tokio::task::spawn_blocking(move || FileStamp::of(&path))
            .await
            .unwrap_or(FileStamp::Unreadable);
        if stamp == *last_read {
            return None;
        }
        Some(
            self.reload_locked(file, &mut last_read, ReloadTrigger::FileChange)
                .await,
        )
    }

    async fn reload_locked(
        &self,
        file: &PricingFile,
        last_read: &mut FileStamp,
        trigger: ReloadTrigger,
    ) -> Result<Arc<Pricing>, ReloadError> {
        let path = file.path.clone();
        let loaded = tokio::task::spawn_blocking(move || {
            let stamp = FileStamp::of(&path);
            (stamp, Pricing::load(&path))
        })
        .await;
        let (stamp, result) = match loaded {
            Ok(loaded) => loaded,
            Err(join_error) => {
                let source = std::io::Error::other(join_error.to_string());
                let error = PricingError::Read {
                    path: file.path.clone(),
                    source,
                };
                (FileStamp::Unreadable, Err(error))
            }
        };
        // A failed read records the stamp too, so that the poll logs a broken file once rather
        // than every interval. Fixing the file changes the stamp again.
        *last_read = stamp;
        let path = file.path.display();
        match result {
            Ok(pricing) => {
                let pricing = Arc::new(pricing);
                *self.current.write().unwrap_or_else(PoisonError::into_inner) = pricing.clone();
                tracing::info!(
                    %trigger, %path, models = pricing.model_count(),
                    aliases = pricing.alias_count(), checked = pricing.checked(),
                    "pricing reloaded"
                );
                Ok(pricing)
            }
            Err(error) => {
                tracing::error!(
                    %trigger, %path, %error,
                    "pricing reload failed; the previous prices stay in force"
                );
                Err(ReloadError::Pricing(error))
            }
        }
    }
}

/// Checks the pricing file every `interval` and reloads it when its modification time or length
/// changed. Runs until the task is dropped or aborted.
pub async fn watch_pricing_file(pricing: SharedPricing, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The first tick completes at once, and the file was just loaded.
    ticks.tick().await;
    loop {
        ticks.tick().await;
        // The reload logs its own outcome.
        let _ = pricing.reload_if_changed().await;
    }
}

/// Registers for SIGHUP and spawns a task that reloads the pricing file on each one. Once this
/// returns, SIGHUP no longer ends the process.
pub fn spawn_sighup_reload(pricing: SharedPricing) -> std::io::Result<JoinHandle<()>> {
    let mut hangups = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    Ok(tokio::spawn(async move {
        while hangups.recv().await.is_some() {
            // The reload logs its own outcome.
            let _ = pricing.reload(ReloadTrigger::Signal).await;
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PRICING: &str = "checked = \"2026-01-02\"\n[models.m]\ninput = \"1\"\noutput = \"2\"\n";

    #[test]
    fn replaced_pricing_is_seen_by_later_reads() {
        let shared = SharedPricing::new(
            Pricing::from_toml(PRICING)
                .unwrap_or_else(|e| unreachable!("test pricing must parse: {e}")),
        );
        let replacement = PRICING.replace("2026-01-02", "2026-02-03");
        if let Ok(pricing) = Pricing::from_toml(&replacement) {
            shared.replace(pricing);
        }
        assert_eq!(shared.current().checked(), "2026-02-03");
    }

    #[tokio::test]
    async fn reload_without_a_file_is_rejected() {
        let shared = SharedPricing::new(
            Pricing::from_toml(PRICING)
                .unwrap_or_else(|e| unreachable!("test pricing must parse: {e}")),
        );
        let result = shared.reload(ReloadTrigger::AdminApi).await;
        assert!(matches!(result, Err(ReloadError::NoFile)));
    }

    #[test]
    fn missing_file_has_an_unreadable_stamp() {
        assert_eq!(
            FileStamp::of(Path::new("/nonexistent/pricing.toml")),
            FileStamp::Unreadable
        );
    }
}
