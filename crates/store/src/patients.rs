//! The alliance patient index (`patient_links`): which site identifiers were filed under which
//! patient keys. Written in the ingest transactions; read by look-ups (`app::patients`). Also the
//! blob keys catalog rows point to, one key range at a time (`yilian repair blobs`).

use sqlx::{Any, Row, Transaction};
use yilian_app::ports::PortError;
use yilian_domain::{LocalPatientId, PatientKey, SiteId};

use crate::catalog::{SqlCatalog, db};

/// Links each identifier to `key` (a link seen again only moves its `last_seen_at`).
pub(crate) async fn link_ids(
    tx: &mut Transaction<'static, Any>,
    ids: &[LocalPatientId],
    key: &PatientKey,
    site: &SiteId,
    at: i64,
) -> Result<(), PortError> {
    for id in ids {
        sqlx::query(
            "INSERT INTO patient_links (issuer, patient_id, patient_key, site_id, first_seen_at, last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             ON CONFLICT (issuer, patient_id, patient_key) DO UPDATE SET last_seen_at = excluded.last_seen_at",
        )
        .bind(&id.issuer)
        .bind(&id.id)
        .bind(&key.0)
        .bind(site.as_str())
        .bind(at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    Ok(())
}

impl SqlCatalog {
    pub(crate) async fn blob_keys_between(
        &self,
        from: &str,
        to: &str,
    ) -> Result<Vec<String>, PortError> {
        let rows = sqlx::query(
            "SELECT blob_key FROM instances WHERE blob_key >= $1 AND blob_key < $2 \
             UNION SELECT source_blob_key FROM ecg_records WHERE source_blob_key >= $1 AND source_blob_key < $2 \
             UNION SELECT blob_key FROM lab_messages WHERE blob_key >= $1 AND blob_key < $2",
        )
        .bind(from)
        .bind(to)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map_err(db))
            .collect()
    }

    pub(crate) async fn keys_linked_to_id(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        let rows = sqlx::query(
            "SELECT patient_key FROM patient_links WHERE issuer = $1 AND patient_id = $2 ORDER BY patient_key",
        )
        .bind(issuer)
        .bind(patient_id)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| r.try_get::<String, _>(0).map(PatientKey).map_err(db))
            .collect()
    }

    pub(crate) async fn ids_linked_to_key(
        &self,
        key: &PatientKey,
    ) -> Result<Vec<LocalPatientId>, PortError> {
        let rows = sqlx::query(
            "SELECT issuer, patient_id FROM patient_links WHERE patient_key = $1 ORDER BY issuer, patient_id LIMIT 64",
        )
        .bind(&key.0)
        .fetch_all(self.pool())
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(LocalPatientId {
                    issuer: r.try_get::<String, _>(0).map_err(db)?,
                    id: r.try_get::<String, _>(1).map_err(db)?,
                })
            })
            .collect()
    }
}
