//! Blob repair (`yilian repair blobs`): blobs no catalog row points to (orphans — an ingest that wrote
//! its blob and then failed or crashed before its row committed; the blob is harmless but uses space)
//! and catalog rows whose blob is gone (data loss, reported, never "repaired" silently). The store is
//! walked one key shard (`sha256/ab/`) at a time, so memory holds 1/256 of the keys at once.

use std::collections::HashSet;

use crate::error::AppError;
use crate::hub::Hub;
use crate::ingest::blob_key;
use crate::ports::{AuditEvent, BlobInfo};

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
                    "{} blobs; {} orphans ({} deleted); {} recent unreferenced; {} missing",
                    report.blobs,
                    report.orphans.len(),
                    report.deleted,
                    report.recent_unreferenced,
                    report.missing.len()
                ),
            })
            .await?;
        Ok(report)
    }
}
