//! Blob repair (`yilian repair blobs`): blobs no catalog row points to (orphans — an ingest that wrote
//! its blob and then failed or crashed before its row committed; the blob is harmless but uses space)
//! and catalog rows whose blob is gone (data loss, reported, never "repaired" silently). The store is
//! walked one key shard (`sha256/ab/`) at a time, so memory holds 1/256 of the keys at once. Spool
//! files a killed process left in the staging folder (an upload cut off mid-transfer) are found and
//! removed the same way.

use std::collections::HashSet;

use crate::error::AppError;
use crate::hub::Hub;
use crate::ingest::blob_key;
use crate::ports::{AuditEvent, BlobInfo, PortError};

/// SHA-256 of zero bytes: the blob `yilian serve` writes to check the store at start.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What a repair run found (and did).
#[derive(Clone, Debug, Default)]
pub struct BlobRepairReport {
    /// Blobs in the store, and their bytes.
    pub blobs: u64,
    pub bytes: u64,
    /// Blobs nothing points to and older than the grace period.
    pub orphans: Vec<BlobInfo>,
    /// Of those, removed (only with `delete`).
    pub deleted: usize,
    /// Unreferenced blobs younger than the grace period: perhaps an upload in progress; left alone.
    pub recent_unreferenced: usize,
    /// Keys catalog rows point to that the store does not have.
    pub missing: Vec<String>,
    /// Files in the staging folder (`Blobs::staging_dir`) older than the grace period: uploads a
    /// crash cut off (a live upload's spool file is written to, or read for its store, within
    /// minutes). Never referenced by the catalog.
    pub stale_spool_files: usize,
    pub stale_spool_bytes: u64,
    /// Of those, removed (only with `delete`).
    pub spool_deleted: usize,
}

impl Hub {
    /// Finds orphan and missing blobs; with `delete`, removes the orphans older than `grace_secs`.
    /// Recorded in the audit trail (`blobs.repair`, actor `system`).
    pub async fn repair_blobs(
        &self,
        delete: bool,
        grace_secs: i64,
    ) -> Result<BlobRepairReport, AppError> {
        let now = self.now();
        let mut report = BlobRepairReport::default();
        let keep = blob_key(EMPTY_SHA256);
        for shard in 0..=255u8 {
            let prefix = format!("sha256/{shard:02x}/");
            // Every key of the shard sorts at or after the prefix and before `sha256/ab0` ('0' > '/').
            let end = format!("sha256/{shard:02x}0");
            let listed = self.blobs.list(&prefix).await?;
            let referenced: HashSet<String> = self
                .catalog
                .referenced_blob_keys(&prefix, &end)
                .await?
                .into_iter()
                .collect();
            let stored: HashSet<&str> = listed.iter().map(|b| b.key.as_str()).collect();
            for b in &listed {
                report.blobs += 1;
                report.bytes += b.size;
                if referenced.contains(&b.key) || b.key == keep {
                    continue;
                }
                if now.0 - b.modified.0 < grace_secs.saturating_mul(1000) {
                    report.recent_unreferenced += 1;
                    continue;
                }
                if delete {
                    self.blobs.delete(&b.key).await?;
                    report.deleted += 1;
                }
                report.orphans.push(b.clone());
            }
            let mut missing: Vec<String> = referenced
                .iter()
                .filter(|k| !stored.contains(k.as_str()))
                .cloned()
                .collect();
            missing.sort();
            report.missing.extend(missing);
        }
        if let Some(dir) = self.blobs.staging_dir() {
            self.sweep_spool(&dir, delete, grace_secs, &mut report)
                .await?;
        }
        self.catalog
            .audit(&AuditEvent {
                at: now,
                actor: "system".into(),
                action: "blobs.repair".into(),
                resource_type: "blob_store".into(),
                resource_id: self.config.blobs.url.clone(),
                patient_key: None,
                outcome: if report.missing.is_empty() {
                    "ok".into()
                } else {
                    "missing".into()
                },
                detail: format!(
                    "{} blobs; {} orphans ({} deleted); {} recent unreferenced; {} missing; {} stale spool files ({} deleted)",
                    report.blobs,
                    report.orphans.len(),
                    report.deleted,
                    report.recent_unreferenced,
                    report.missing.len(),
                    report.stale_spool_files,
                    report.spool_deleted
                ),
            })
            .await?;
        Ok(report)
    }

    /// Counts (and with `delete` removes) the regular files directly in the staging folder whose
    /// last write is older than `grace_secs`.
    async fn sweep_spool(
        &self,
        dir: &std::path::Path,
        delete: bool,
        grace_secs: i64,
        report: &mut BlobRepairReport,
    ) -> Result<(), AppError> {
        let io = |e: std::io::Error| {
            PortError::Unavailable(format!("staging folder {}: {e}", dir.display()))
        };
        let mut entries = match tokio::fs::read_dir(dir).await {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e).into()),
        };
        let now = self.now();
        while let Some(entry) = entries.next_entry().await.map_err(io)? {
            let Ok(meta) = entry.metadata().await else {
                continue; // gone meanwhile: an upload finished
            };
            if !meta.is_file() {
                continue;
            }
            let modified = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
            if now.0 - modified < grace_secs.saturating_mul(1000) {
                continue;
            }
            report.stale_spool_files += 1;
            report.stale_spool_bytes += meta.len();
            if delete {
                match tokio::fs::remove_file(entry.path()).await {
                    Ok(()) => report.spool_deleted += 1,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io(e).into()),
                }
            }
        }
        Ok(())
    }
}
