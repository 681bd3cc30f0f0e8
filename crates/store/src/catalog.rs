//! The catalog on sqlx's `Any` driver: the same SQL runs on SQLite and PostgreSQL. Placeholders are
//! `$N` (both engines accept them), times are BIGINT epoch milliseconds, booleans are 0/1.

use async_trait::async_trait;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{AnyPool, Executor, Row};
use yilian_app::ports::*;
use yilian_domain::{
    ExamId, ExamKind, ExamState, LocalPatientId, PatientKey, PoolId, Priority, ReportId,
    ReportStatus, SeriesInstanceUid, SiteId, SopClassUid, SopInstanceUid, StudyInstanceUid,
    UnixMillis, Username,
};
use yilian_signing::{PublicKeyRecord, format_time, parse_time};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot open the catalog at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("catalog migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("cannot create {path}: {source}")]
    Dir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Clone, Debug)]
pub struct SqlCatalog {
    pool: AnyPool,
    backend: Backend,
}

/// `format!` for SQL whose only interpolations are the column-list constants above (never input).
macro_rules! sql {
    ($($t:tt)*) => { sqlx::AssertSqlSafe(format!($($t)*)) };
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

pub(crate) fn db(e: sqlx::Error) -> PortError {
    PortError::Unavailable(e.to_string())
}

pub(crate) fn corrupt(what: &str, e: impl std::fmt::Display) -> PortError {
    PortError::Corrupt(format!("{what}: {e}"))
}

/// A `sqlite:` URL's file path, so its folder can be created first.
fn sqlite_path(url: &str) -> Option<&str> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next()?;
    (!path.is_empty() && path != ":memory:").then_some(path)
}

impl SqlCatalog {
    /// Fills each notification's recipients with one query.
    async fn load_recipients(&self, list: &mut [Notification]) -> Result<(), PortError> {
        if list.is_empty() {
            return Ok(());
        }
        let placeholders = (1..=list.len())
            .map(|i| format!("${i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let text = sql!(
            "SELECT notification_id, username FROM notification_recipients WHERE notification_id IN ({placeholders}) \
             ORDER BY notification_id, username"
        );
        let mut q = sqlx::query(text);
        for n in list.iter() {
            q = q.bind(n.notification_id.clone());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        for r in &rows {
            let id: String = get(r, "notification_id")?;
            let user = uid(r, "username", Username::new)?;
            if let Some(n) = list.iter_mut().find(|n| n.notification_id == id) {
                n.recipients.push(user);
            }
        }
        Ok(())
    }

    /// Connects and applies pending migrations.
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        sqlx::any::install_default_drivers();
        let backend = if url.starts_with("sqlite:") {
            Backend::Sqlite
        } else {
            Backend::Postgres
        };
        if let Some(path) = sqlite_path(url)
            && let Some(parent) = std::path::Path::new(path)
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(|source| StoreError::Dir {
                path: parent.display().to_string(),
                source,
            })?;
        }
        let mut opts = AnyPoolOptions::new().max_connections(max_connections.max(1));
        if backend == Backend::Sqlite {
            opts = opts.after_connect(|conn, _meta| {
                Box::pin(async move {
                    // WAL for concurrent readers; FULL so a committed transaction survives power loss.
                    conn.execute("PRAGMA journal_mode = WAL").await?;
                    conn.execute("PRAGMA synchronous = FULL").await?;
                    conn.execute("PRAGMA foreign_keys = ON").await?;
                    conn.execute("PRAGMA busy_timeout = 10000").await?;
                    // LIKE as on PostgreSQL: case-sensitive (person names are lowered explicitly).
                    conn.execute("PRAGMA case_sensitive_like = ON").await?;
                    Ok(())
                })
            });
        }
        let pool = opts
            .connect(url)
            .await
            .map_err(|source| StoreError::Connect {
                url: redact(url),
                source,
            })?;
        MIGRATOR.run(&pool).await?;
        Ok(SqlCatalog { pool, backend })
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }
}

/// One audit row, on the pool or inside a transaction.
/// Appends an audit event to the hash chain inside the caller's transaction.
pub(crate) async fn insert_audit(
    conn: &mut sqlx::AnyConnection,
    e: &AuditEvent,
) -> Result<(), PortError> {
    crate::audit::append(conn, e).await
}

/// Drops a password from a database URL before it is shown.
fn redact(url: &str) -> String {
    match (url.find("://"), url.find('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***{}", &url[..s], &url[at..]),
        _ => url.to_string(),
    }
}

pub(crate) fn uid<T>(
    row: &AnyRow,
    col: &str,
    make: fn(String) -> Result<T, yilian_domain::IdError>,
) -> Result<T, PortError> {
    let s: String = row.try_get(col).map_err(db)?;
    make(s).map_err(|e| corrupt(col, e))
}

pub(crate) fn get<'r, T: sqlx::Decode<'r, sqlx::Any> + sqlx::Type<sqlx::Any>>(
    row: &'r AnyRow,
    col: &str,
) -> Result<T, PortError> {
    row.try_get(col).map_err(db)
}

/// A COUNT or SUM of flags as a count (they are never negative).
fn count(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

const STUDY_COLS: &str = "study_uid, site_id, patient_key, issuer, patient_id, patient_name, study_date, accession_number, description, \
                          state, urgent, urgent_reason, first_received_at, last_received_at";

fn study_row(r: &AnyRow) -> Result<StudyRecord, PortError> {
    let state: String = get(r, "state")?;
    Ok(StudyRecord {
        study_uid: uid(r, "study_uid", StudyInstanceUid::new)?,
        site: uid(r, "site_id", SiteId::new)?,
        patient_key: PatientKey(get(r, "patient_key")?),
        issuer_of_patient_id: get(r, "issuer")?,
        patient_id: get(r, "patient_id")?,
        patient_name: get(r, "patient_name")?,
        study_date: get(r, "study_date")?,
        accession_number: get(r, "accession_number")?,
        study_description: get(r, "description")?,
        state: StudyState::parse(&state).ok_or_else(|| corrupt("studies.state", state))?,
        urgent: get::<i64>(r, "urgent")? != 0,
        urgent_reason: get(r, "urgent_reason")?,
        first_received_at: UnixMillis(get(r, "first_received_at")?),
        last_received_at: UnixMillis(get(r, "last_received_at")?),
    })
}

const INSTANCE_COLS: &str = "sop_instance_uid, series_uid, study_uid, sop_class_uid, transfer_syntax_uid, instance_number, pixel_rows, \
                             pixel_columns, number_of_frames, size_bytes, sha256, blob_key, received_at, received_by";

fn instance_row(r: &AnyRow) -> Result<InstanceRecord, PortError> {
    Ok(InstanceRecord {
        sop_instance_uid: uid(r, "sop_instance_uid", SopInstanceUid::new)?,
        sop_class_uid: uid(r, "sop_class_uid", SopClassUid::new)?,
        series_uid: uid(r, "series_uid", SeriesInstanceUid::new)?,
        study_uid: uid(r, "study_uid", StudyInstanceUid::new)?,
        transfer_syntax_uid: get(r, "transfer_syntax_uid")?,
        instance_number: get(r, "instance_number")?,
        rows: get(r, "pixel_rows")?,
        columns: get(r, "pixel_columns")?,
        number_of_frames: get(r, "number_of_frames")?,
        size_bytes: get(r, "size_bytes")?,
        sha256: get(r, "sha256")?,
        blob_key: get(r, "blob_key")?,
        received_at: UnixMillis(get(r, "received_at")?),
        received_by: uid(r, "received_by", Username::new)?,
    })
}

const EXAM_COLS: &str = "e.exam_id, e.study_uid, e.site_id, e.patient_key, e.modality, e.pool_id, e.priority, e.due_at, e.route_rule, \
                         e.route_reason, e.state, e.claimed_by, e.lease_until, e.created_at, s.patient_id, s.issuer, s.patient_name, \
                         s.description, s.study_date, s.first_received_at, e.kind, e.alerts, e.escalated_pool, e.escalated_at, \
                         e.escalation_reason, e.review_required, e.escalate_next_at, e.awaiting_review, e.drafted_by, \
                         e.subspecialty, e.offered_to, e.offered_at, e.offer_until, e.offer_reason";

fn exam_row(r: &AnyRow) -> Result<ExamRecord, PortError> {
    let priority: String = get(r, "priority")?;
    let state: String = get(r, "state")?;
    let claimed_by: Option<String> = get(r, "claimed_by")?;
    Ok(ExamRecord {
        exam_id: uid(r, "exam_id", ExamId::new)?,
        study_uid: uid(r, "study_uid", StudyInstanceUid::new)?,
        site: uid(r, "site_id", SiteId::new)?,
        patient_key: PatientKey(get(r, "patient_key")?),
        modality: get(r, "modality")?,
        pool: uid(r, "pool_id", PoolId::new)?,
        priority: Priority::parse(&priority).ok_or_else(|| corrupt("exams.priority", &priority))?,
        due_at: UnixMillis(get(r, "due_at")?),
        route_rule: get(r, "route_rule")?,
        route_reason: get(r, "route_reason")?,
        state: ExamState::parse(&state).ok_or_else(|| corrupt("exams.state", &state))?,
        claimed_by: claimed_by
            .map(Username::new)
            .transpose()
            .map_err(|e| corrupt("exams.claimed_by", e))?,
        lease_until: get::<Option<i64>>(r, "lease_until")?.map(UnixMillis),
        created_at: UnixMillis(get(r, "created_at")?),
        patient_id: get(r, "patient_id")?,
        issuer_of_patient_id: get(r, "issuer")?,
        patient_name: get(r, "patient_name")?,
        study_description: get(r, "description")?,
        study_date: get(r, "study_date")?,
        first_received_at: UnixMillis(get(r, "first_received_at")?),
        kind: {
            let k: String = get(r, "kind")?;
            ExamKind::parse(&k).ok_or_else(|| corrupt("exams.kind", &k))?
        },
        alerts: get(r, "alerts")?,
        escalated_pool: get::<Option<String>>(r, "escalated_pool")?
            .map(PoolId::new)
            .transpose()
            .map_err(|e| corrupt("exams.escalated_pool", e))?,
        escalated_at: get::<Option<i64>>(r, "escalated_at")?.map(UnixMillis),
        escalation_reason: get(r, "escalation_reason")?,
        review: get::<i64>(r, "review_required")? != 0,
        awaiting_review: get::<i64>(r, "awaiting_review")? != 0,
        drafted_by: get::<Option<String>>(r, "drafted_by")?
            .map(Username::new)
            .transpose()
            .map_err(|e| corrupt("exams.drafted_by", e))?,
        escalate_next_at: get::<Option<i64>>(r, "escalate_next_at")?.map(UnixMillis),
        subspecialty: get(r, "subspecialty")?,
        offered_to: get::<Option<String>>(r, "offered_to")?
            .map(Username::new)
            .transpose()
            .map_err(|e| corrupt("exams.offered_to", e))?,
        offered_at: get::<Option<i64>>(r, "offered_at")?.map(UnixMillis),
        offer_until: get::<Option<i64>>(r, "offer_until")?.map(UnixMillis),
        offer_reason: get(r, "offer_reason")?,
    })
}

const NOTIFICATION_COLS: &str = "notification_id, at, kind, exam_id, pool_id, priority, due_at, message, webhook_state, webhook_attempts";

/// The notification and its recipients, on the caller's connection (inside its transaction).
pub(crate) async fn insert_notification(
    conn: &mut sqlx::AnyConnection,
    n: &Notification,
) -> Result<(), PortError> {
    sqlx::query(sql!(
        "INSERT INTO notifications ({NOTIFICATION_COLS}, addressed) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(&n.notification_id)
    .bind(n.at.0)
    .bind(&n.kind)
    .bind(n.exam_id.as_str())
    .bind(n.pool.as_str())
    .bind(n.priority.as_str())
    .bind(n.due_at.0)
    .bind(&n.message)
    .bind(&n.webhook_state)
    .bind(n.webhook_attempts)
    .bind(i64::from(!n.recipients.is_empty()))
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    for u in &n.recipients {
        sqlx::query(
            "INSERT INTO notification_recipients (notification_id, username) VALUES ($1, $2)",
        )
        .bind(&n.notification_id)
        .bind(u.as_str())
        .execute(&mut *conn)
        .await
        .map_err(db)?;
    }
    Ok(())
}

pub(crate) fn notification_row(r: &AnyRow) -> Result<Notification, PortError> {
    let priority: String = get(r, "priority")?;
    Ok(Notification {
        notification_id: get(r, "notification_id")?,
        at: UnixMillis(get(r, "at")?),
        kind: get(r, "kind")?,
        exam_id: uid(r, "exam_id", ExamId::new)?,
        pool: uid(r, "pool_id", PoolId::new)?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| corrupt("notifications.priority", &priority))?,
        due_at: UnixMillis(get(r, "due_at")?),
        message: get(r, "message")?,
        webhook_state: get(r, "webhook_state")?,
        webhook_attempts: get(r, "webhook_attempts")?,
        recipients: Vec::new(),
    })
}

const ECG_COLS: &str = "sop_instance_uid, study_uid, patient_key, site_id, acquired_at, received_at, source_format, source_blob_key, \
                        source_sha256, sample_rate_hz, samples_per_lead, leads, heart_rate_bpm, alerts, summary";

fn ecg_row(r: &AnyRow) -> Result<EcgRow, PortError> {
    Ok(EcgRow {
        sop_instance_uid: uid(r, "sop_instance_uid", SopInstanceUid::new)?,
        study_uid: uid(r, "study_uid", StudyInstanceUid::new)?,
        patient_key: PatientKey(get(r, "patient_key")?),
        site: uid(r, "site_id", SiteId::new)?,
        acquired_at: get(r, "acquired_at")?,
        received_at: UnixMillis(get(r, "received_at")?),
        source_format: get(r, "source_format")?,
        source_blob_key: get(r, "source_blob_key")?,
        source_sha256: get(r, "source_sha256")?,
        sample_rate_hz: get(r, "sample_rate_hz")?,
        samples_per_lead: get(r, "samples_per_lead")?,
        leads: get(r, "leads")?,
        heart_rate_bpm: get(r, "heart_rate_bpm")?,
        alerts: get(r, "alerts")?,
        summary: get(r, "summary")?,
    })
}

pub(crate) const REPORT_COLS: &str = "report_id, exam_id, version, status, findings, impression, author, created_at, updated_at, signed_at, key_id, \
                           algorithm, signature, document, template, sections, countersignature";

pub(crate) fn report_row(r: &AnyRow) -> Result<ReportRecord, PortError> {
    let status: String = get(r, "status")?;
    Ok(ReportRecord {
        report_id: uid(r, "report_id", ReportId::new)?,
        exam_id: uid(r, "exam_id", ExamId::new)?,
        version: get(r, "version")?,
        status: ReportStatus::parse(&status).ok_or_else(|| corrupt("reports.status", &status))?,
        findings: get(r, "findings")?,
        impression: get(r, "impression")?,
        author: uid(r, "author", Username::new)?,
        created_at: UnixMillis(get(r, "created_at")?),
        updated_at: UnixMillis(get(r, "updated_at")?),
        signed_at: get::<Option<i64>>(r, "signed_at")?.map(UnixMillis),
        key_id: get(r, "key_id")?,
        algorithm: get(r, "algorithm")?,
        signature: get(r, "signature")?,
        document: get(r, "document")?,
        template: get(r, "template")?,
        sections: get(r, "sections")?,
        countersignature: get(r, "countersignature")?,
    })
}

/// Inserts a final report row inside the caller's transaction (final rows are never updated).
pub(crate) async fn insert_final_report(
    conn: &mut sqlx::AnyConnection,
    r: &ReportRecord,
) -> Result<(), PortError> {
    sqlx::query(sql!(
        "INSERT INTO reports ({REPORT_COLS}) VALUES ($1, $2, $3, 'final', $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
    ))
    .bind(r.report_id.as_str())
    .bind(r.exam_id.as_str())
    .bind(r.version)
    .bind(&r.findings)
    .bind(&r.impression)
    .bind(r.author.as_str())
    .bind(r.created_at.0)
    .bind(r.updated_at.0)
    .bind(r.signed_at.map(|t| t.0))
    .bind(&r.key_id)
    .bind(&r.algorithm)
    .bind(&r.signature)
    .bind(&r.document)
    .bind(&r.template)
    .bind(&r.sections)
    .bind(&r.countersignature)
    .execute(&mut *conn)
    .await
    .map_err(db)?;
    Ok(())
}

#[async_trait]
impl Catalog for SqlCatalog {
    async fn ping(&self) -> Result<(), PortError> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn instance(&self, sop: &SopInstanceUid) -> Result<Option<InstanceRecord>, PortError> {
        let row = sqlx::query(sql!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE sop_instance_uid = $1"
        ))
        .bind(sop.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(instance_row).transpose()
    }

    async fn insert_instance(&self, n: &NewInstance) -> Result<InsertOutcome, PortError> {
        let i = &n.instance;
        let now = i.received_at.0;
        let mut tx = self.pool.begin().await.map_err(db)?;
        // A write first: on SQLite this takes the write lock now (waiting on busy_timeout) instead of
        // failing to upgrade a read lock later.
        sqlx::query("INSERT INTO patients (patient_key, created_at) VALUES ($1, $2) ON CONFLICT (patient_key) DO NOTHING")
            .bind(&n.patient_key.0)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let existing: Option<String> =
            sqlx::query_scalar("SELECT sha256 FROM instances WHERE sop_instance_uid = $1")
                .bind(i.sop_instance_uid.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?;
        if let Some(sha) = existing {
            tx.rollback().await.map_err(db)?;
            return Ok(if sha == i.sha256 {
                InsertOutcome::SameBytes
            } else {
                InsertOutcome::DifferentBytes {
                    existing_sha256: sha,
                }
            });
        }
        sqlx::query(
            "INSERT INTO patient_ids (issuer, patient_id, patient_key, site_id, patient_name, birth_date, sex, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (issuer, patient_id) DO UPDATE SET patient_name = excluded.patient_name, birth_date = excluded.birth_date, \
             sex = excluded.sex, updated_at = excluded.updated_at",
        )
        .bind(&n.issuer_of_patient_id)
        .bind(&n.patient_id)
        .bind(&n.patient_key.0)
        .bind(n.site.as_str())
        .bind(&n.patient_name)
        .bind(&n.patient_birth_date)
        .bind(&n.patient_sex)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let study = sqlx::query(
            "INSERT INTO studies (study_uid, site_id, patient_key, issuer, patient_id, patient_name, study_date, study_time, \
             accession_number, description, state, urgent, first_received_at, last_received_at, study_id, referring_physician) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'receiving', 0, $11, $11, $12, $13) \
             ON CONFLICT (study_uid) DO UPDATE SET last_received_at = excluded.last_received_at \
             WHERE studies.site_id = excluded.site_id",
        )
        .bind(n.study_uid.as_str())
        .bind(n.site.as_str())
        .bind(&n.patient_key.0)
        .bind(&n.issuer_of_patient_id)
        .bind(&n.patient_id)
        .bind(&n.patient_name)
        .bind(&n.study_date)
        .bind(&n.study_time)
        .bind(&n.accession_number)
        .bind(&n.study_description)
        .bind(now)
        .bind(&n.study_id)
        .bind(&n.referring_physician_name)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if study.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(InsertOutcome::StudyOfOtherSite);
        }
        sqlx::query(
            "INSERT INTO series (series_uid, study_uid, modality, series_number, description, body_part, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (series_uid) DO NOTHING",
        )
        .bind(n.series_uid.as_str())
        .bind(n.study_uid.as_str())
        .bind(&n.modality)
        .bind(n.series_number)
        .bind(&n.series_description)
        .bind(&n.body_part_examined)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let inserted = sqlx::query(sql!(
            "INSERT INTO instances ({INSTANCE_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             ON CONFLICT (sop_instance_uid) DO NOTHING"
        ))
        .bind(i.sop_instance_uid.as_str())
        .bind(i.series_uid.as_str())
        .bind(i.study_uid.as_str())
        .bind(i.sop_class_uid.as_str())
        .bind(&i.transfer_syntax_uid)
        .bind(i.instance_number)
        .bind(i.rows)
        .bind(i.columns)
        .bind(i.number_of_frames)
        .bind(i.size_bytes)
        .bind(&i.sha256)
        .bind(&i.blob_key)
        .bind(now)
        .bind(i.received_by.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if inserted.rows_affected() == 0 {
            // Lost a race with a concurrent insert of the same SOP Instance UID (PostgreSQL).
            tx.rollback().await.map_err(db)?;
            let sha = self
                .instance(&i.sop_instance_uid)
                .await?
                .map(|e| e.sha256)
                .unwrap_or_default();
            return Ok(if sha == i.sha256 {
                InsertOutcome::SameBytes
            } else {
                InsertOutcome::DifferentBytes {
                    existing_sha256: sha,
                }
            });
        }
        sqlx::query(
            "INSERT INTO instance_metadata (sop_instance_uid, study_uid, series_uid, document) VALUES ($1, $2, $3, $4)",
        )
        .bind(i.sop_instance_uid.as_str())
        .bind(i.study_uid.as_str())
        .bind(i.series_uid.as_str())
        .bind(&n.metadata)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if let Some(e) = &n.ecg {
            sqlx::query(sql!(
                "INSERT INTO ecg_records ({ECG_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"
            ))
            .bind(e.sop_instance_uid.as_str())
            .bind(e.study_uid.as_str())
            .bind(&e.patient_key.0)
            .bind(e.site.as_str())
            .bind(&e.acquired_at)
            .bind(e.received_at.0)
            .bind(&e.source_format)
            .bind(&e.source_blob_key)
            .bind(&e.source_sha256)
            .bind(e.sample_rate_hz)
            .bind(e.samples_per_lead)
            .bind(&e.leads)
            .bind(e.heart_rate_bpm)
            .bind(&e.alerts)
            .bind(&e.summary)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        crate::patients::link_ids(&mut tx, &n.linked_ids, &n.patient_key, &n.site, now).await?;
        insert_audit(&mut tx, &n.audit).await?;
        tx.commit().await.map_err(db)?;
        Ok(InsertOutcome::Inserted)
    }

    async fn study(&self, study: &StudyInstanceUid) -> Result<Option<StudyRecord>, PortError> {
        let row = sqlx::query(sql!(
            "SELECT {STUDY_COLS} FROM studies WHERE study_uid = $1"
        ))
        .bind(study.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(study_row).transpose()
    }

    async fn study_series(&self, study: &StudyInstanceUid) -> Result<Vec<SeriesRecord>, PortError> {
        let rows = sqlx::query(
            "SELECT series_uid, modality, series_number, description, body_part FROM series WHERE study_uid = $1 ORDER BY created_at, series_uid",
        )
        .bind(study.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(SeriesRecord {
                    series_uid: uid(r, "series_uid", SeriesInstanceUid::new)?,
                    modality: get(r, "modality")?,
                    series_number: get(r, "series_number")?,
                    description: get(r, "description")?,
                    body_part: get(r, "body_part")?,
                })
            })
            .collect()
    }

    async fn study_instances(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Vec<InstanceRecord>, PortError> {
        let rows = sqlx::query(sql!(
            "SELECT {INSTANCE_COLS} FROM instances WHERE study_uid = $1 ORDER BY series_uid, instance_number, sop_instance_uid"
        ))
        .bind(study.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(instance_row).collect()
    }

    async fn search(
        &self,
        query: &yilian_formats::query::Query,
        scope: &SearchScope,
    ) -> Result<Vec<yilian_formats::query::QueryMatch>, PortError> {
        crate::search::search(&self.pool, query, scope).await
    }

    async fn metadata(
        &self,
        study: &StudyInstanceUid,
        series: Option<&SeriesInstanceUid>,
        sop: Option<&SopInstanceUid>,
    ) -> Result<Vec<(SopInstanceUid, String)>, PortError> {
        let rows = sqlx::query(
            "SELECT m.sop_instance_uid, m.document FROM instance_metadata m JOIN instances i ON i.sop_instance_uid = m.sop_instance_uid \
             WHERE m.study_uid = $1 AND (CAST($2 AS TEXT) IS NULL OR m.series_uid = $2) AND (CAST($3 AS TEXT) IS NULL OR m.sop_instance_uid = $3) \
             ORDER BY i.series_uid, i.instance_number, i.sop_instance_uid",
        )
        .bind(study.as_str())
        .bind(series.map(|s| s.as_str().to_string()))
        .bind(sop.map(|s| s.as_str().to_string()))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok((
                    uid(r, "sop_instance_uid", SopInstanceUid::new)?,
                    r.try_get("document").map_err(|e| corrupt("metadata", e))?,
                ))
            })
            .collect()
    }

    async fn patient_key_of(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Option<PatientKey>, PortError> {
        let key: Option<String> = sqlx::query_scalar(
            "SELECT patient_key FROM patient_ids WHERE issuer = $1 AND patient_id = $2",
        )
        .bind(issuer)
        .bind(patient_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(key.map(PatientKey))
    }

    async fn referenced_blob_keys(&self, from: &str, to: &str) -> Result<Vec<String>, PortError> {
        self.blob_keys_between(from, to).await
    }

    async fn keys_linked_to_id(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        SqlCatalog::keys_linked_to_id(self, issuer, patient_id).await
    }

    async fn ids_linked_to_key(&self, key: &PatientKey) -> Result<Vec<LocalPatientId>, PortError> {
        SqlCatalog::ids_linked_to_key(self, key).await
    }

    async fn reported_patient_keys_by_prefix(
        &self,
        prefix: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        // Keys are lower-case hex: every key starting with the prefix sorts in [prefix, prefix + "g").
        let keys: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT e.patient_key FROM exams e \
             JOIN reports r ON r.exam_id = e.exam_id AND r.status = 'final' \
             WHERE e.patient_key >= $1 AND e.patient_key < $2 ORDER BY e.patient_key",
        )
        .bind(prefix)
        .bind(format!("{prefix}g"))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(keys.into_iter().map(PatientKey).collect())
    }

    async fn patient_birth_date(
        &self,
        issuer: &str,
        patient_id: &str,
    ) -> Result<Option<String>, PortError> {
        let date: Option<Option<String>> = sqlx::query_scalar(
            "SELECT birth_date FROM patient_ids WHERE issuer = $1 AND patient_id = $2",
        )
        .bind(issuer)
        .bind(patient_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(date.flatten().filter(|d| !d.trim().is_empty()))
    }

    async fn mark_study_complete(
        &self,
        study: &StudyInstanceUid,
        urgent: bool,
        reason: Option<&str>,
    ) -> Result<bool, PortError> {
        let r = sqlx::query("UPDATE studies SET state = 'complete', urgent = $2, urgent_reason = $3 WHERE study_uid = $1 AND state = 'receiving'")
            .bind(study.as_str())
            .bind(urgent as i64)
            .bind(reason)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn studies_to_route(
        &self,
        quiet_before: UnixMillis,
        limit: i64,
    ) -> Result<Vec<StudyInstanceUid>, PortError> {
        let rows: Vec<String> = sqlx::query_scalar(
            "SELECT study_uid FROM studies WHERE state = 'complete' OR (state = 'receiving' AND last_received_at <= $1) \
             ORDER BY last_received_at LIMIT $2",
        )
        .bind(quiet_before.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|s| StudyInstanceUid::new(s).map_err(|e| corrupt("studies.study_uid", e)))
            .collect()
    }

    async fn create_exam(&self, e: &NewExam) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "INSERT INTO exams (exam_id, study_uid, site_id, patient_key, kind, modality, pool_id, priority, priority_rank, due_at, \
             route_rule, route_reason, state, claimed_by, lease_until, created_at, updated_at, alerts, review_required, subspecialty) \
             VALUES ($1, $2, $3, $4, $13, $5, $6, $7, $8, $9, $10, $11, 'queued', NULL, NULL, $12, $12, $14, $15, $16) \
             ON CONFLICT (study_uid) DO NOTHING",
        )
        .bind(e.exam_id.as_str())
        .bind(e.study_uid.as_str())
        .bind(e.site.as_str())
        .bind(&e.patient_key.0)
        .bind(&e.modality)
        .bind(e.pool.as_str())
        .bind(e.priority.as_str())
        .bind(e.priority.rank())
        .bind(e.due_at.0)
        .bind(&e.route_rule)
        .bind(&e.route_reason)
        .bind(e.created_at.0)
        .bind(e.kind.as_str())
        .bind(&e.alerts)
        .bind(i64::from(e.review))
        .bind(e.subspecialty.as_deref().map(str::to_lowercase))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() == 0 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        sqlx::query("UPDATE studies SET state = 'routed' WHERE study_uid = $1")
            .bind(e.study_uid.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        if let Some(n) = &e.notification {
            insert_notification(&mut tx, n).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn mark_study_unroutable(&self, study: &StudyInstanceUid) -> Result<(), PortError> {
        sqlx::query("UPDATE studies SET state = 'unroutable' WHERE study_uid = $1 AND state IN ('receiving', 'complete')")
            .bind(study.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn raise_exam(
        &self,
        exam: &ExamId,
        priority: Priority,
        due_at: UnixMillis,
        reason: &str,
        notification: &Notification,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE exams SET priority = $2, priority_rank = $3, due_at = $4, route_reason = route_reason || $5 \
             WHERE exam_id = $1 AND state = 'queued'",
        )
        .bind(exam.as_str())
        .bind(priority.as_str())
        .bind(priority.rank())
        .bind(due_at.0)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_notification(&mut tx, notification).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn overdue_exams(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<ExamRecord>, PortError> {
        let rows = sqlx::query(sql!(
            "SELECT {EXAM_COLS} FROM exams e JOIN studies s ON s.study_uid = e.study_uid \
             WHERE e.state = 'queued' AND ((e.escalated_at IS NULL AND e.due_at <= $1) OR e.escalate_next_at <= $1) \
             AND (e.claimed_by IS NULL OR e.lease_until < $1) ORDER BY e.due_at, e.exam_id LIMIT $2"
        ))
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(exam_row).collect()
    }

    #[allow(clippy::too_many_arguments)]
    async fn escalate_exam(
        &self,
        exam: &ExamId,
        priority: Priority,
        to_pool: Option<&PoolId>,
        reason: &str,
        now: UnixMillis,
        next_step_at: Option<UnixMillis>,
        notification: &Notification,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE exams SET priority = $2, priority_rank = $3, escalated_pool = $4, escalated_at = $5, escalation_reason = $6, \
             escalate_next_at = $7, updated_at = $5 WHERE exam_id = $1 AND state = 'queued' AND escalated_at IS NULL",
        )
        .bind(exam.as_str())
        .bind(priority.as_str())
        .bind(priority.rank())
        .bind(to_pool.map(|p| p.as_str()))
        .bind(now.0)
        .bind(reason)
        .bind(next_step_at.map(|t| t.0))
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_notification(&mut tx, notification).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn escalate_exam_further(
        &self,
        exam: &ExamId,
        to_pool: &PoolId,
        reason: &str,
        now: UnixMillis,
        notification: &Notification,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE exams SET escalated_pool = $2, escalation_reason = COALESCE(escalation_reason, '') || '; ' || $3, \
             escalate_next_at = NULL, updated_at = $4 \
             WHERE exam_id = $1 AND state = 'queued' AND escalate_next_at IS NOT NULL AND escalate_next_at <= $4",
        )
        .bind(exam.as_str())
        .bind(to_pool.as_str())
        .bind(reason)
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        insert_notification(&mut tx, notification).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn notifications_for(
        &self,
        pools: &[PoolId],
        who: &Username,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<Notification>, PortError> {
        // The caller's pools' notifications for the whole pool, and every notification addressed to
        // the caller (of any pool: a critical lab value is addressed to the ordering site's people).
        // The cursor bound inside the subquery too (same meaning): PostgreSQL plans it as a hashed
        // subplan over the user's recipient rows, which the bound keeps to rows after the cursor
        // (`notification_recipients_by_user` is (username, notification_id); docs/catalog-plans.md).
        let addressed = "EXISTS (SELECT 1 FROM notification_recipients r \
             WHERE r.notification_id = n.notification_id AND r.username = $3 AND r.notification_id > $1)";
        let text = if pools.is_empty() {
            sql!(
                "SELECT {NOTIFICATION_COLS} FROM notifications n WHERE notification_id > $1 AND {addressed} \
                 ORDER BY notification_id LIMIT $2"
            )
        } else {
            let list = (0..pools.len())
                .map(|i| format!("${}", i + 4))
                .collect::<Vec<_>>()
                .join(", ");
            sql!(
                "SELECT {NOTIFICATION_COLS} FROM notifications n WHERE notification_id > $1 \
                 AND ((pool_id IN ({list}) AND addressed = 0) OR {addressed}) \
                 ORDER BY notification_id LIMIT $2"
            )
        };
        let mut q = sqlx::query(text)
            .bind(after.unwrap_or(""))
            .bind(limit)
            .bind(who.as_str());
        for p in pools {
            q = q.bind(p.as_str());
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        let mut out = rows
            .iter()
            .map(notification_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.load_recipients(&mut out).await?;
        Ok(out)
    }

    async fn pending_webhooks(&self, limit: i64) -> Result<Vec<Notification>, PortError> {
        let rows = sqlx::query(sql!(
            "SELECT {NOTIFICATION_COLS} FROM notifications WHERE webhook_state = 'pending' ORDER BY notification_id LIMIT $1"
        ))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out = rows
            .iter()
            .map(notification_row)
            .collect::<Result<Vec<_>, _>>()?;
        self.load_recipients(&mut out).await?;
        Ok(out)
    }

    async fn set_webhook_state(
        &self,
        notification_id: &str,
        state: &str,
        attempts: i64,
    ) -> Result<(), PortError> {
        sqlx::query("UPDATE notifications SET webhook_state = $2, webhook_attempts = $3 WHERE notification_id = $1")
            .bind(notification_id)
            .bind(state)
            .bind(attempts)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn ecg_records_of_study(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Vec<EcgRow>, PortError> {
        let rows = sqlx::query(sql!(
            "SELECT {ECG_COLS} FROM ecg_records WHERE study_uid = $1 ORDER BY acquired_at, received_at, sop_instance_uid"
        ))
        .bind(study.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(ecg_row).collect()
    }

    async fn prior_ecg(
        &self,
        patient: &PatientKey,
        not_study: &StudyInstanceUid,
        acquired_before: Option<&str>,
        received_before: UnixMillis,
    ) -> Result<Option<EcgRow>, PortError> {
        // With an acquisition time the prior is the latest ECG acquired before it; records without
        // one are placed by when they were received.
        let row = match acquired_before {
            Some(t) => sqlx::query(sql!(
                "SELECT {ECG_COLS} FROM ecg_records WHERE patient_key = $1 AND study_uid <> $2 \
                 AND ((acquired_at IS NOT NULL AND acquired_at < $3) OR (acquired_at IS NULL AND received_at < $4)) \
                 ORDER BY COALESCE(acquired_at, '') DESC, received_at DESC LIMIT 1"
            ))
            .bind(&patient.0)
            .bind(not_study.as_str())
            .bind(t)
            .bind(received_before.0),
            None => sqlx::query(sql!(
                "SELECT {ECG_COLS} FROM ecg_records WHERE patient_key = $1 AND study_uid <> $2 AND received_at < $3 \
                 ORDER BY received_at DESC LIMIT 1"
            ))
            .bind(&patient.0)
            .bind(not_study.as_str())
            .bind(received_before.0),
        }
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(ecg_row).transpose()
    }

    async fn worklist(&self, pools: &[PoolId]) -> Result<Vec<ExamRecord>, PortError> {
        let mut out = Vec::new();
        for pool in pools {
            let rows = sqlx::query(sql!(
                "SELECT {EXAM_COLS} FROM exams e JOIN studies s ON s.study_uid = e.study_uid \
                 WHERE (e.pool_id = $1 OR e.escalated_pool = $1) AND e.state = 'queued' \
                 ORDER BY e.priority_rank, e.due_at, e.exam_id LIMIT 500"
            ))
            .bind(pool.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
            for r in &rows {
                let exam = exam_row(r)?;
                // A reader of both the pool and its escalation pool sees the exam once.
                if !out.iter().any(|e: &ExamRecord| e.exam_id == exam.exam_id) {
                    out.push(exam);
                }
            }
        }
        out.sort_by(|a, b| {
            (a.priority.rank(), a.due_at, a.exam_id.as_str()).cmp(&(
                b.priority.rank(),
                b.due_at,
                b.exam_id.as_str(),
            ))
        });
        Ok(out)
    }

    async fn exam(&self, exam: &ExamId) -> Result<Option<ExamRecord>, PortError> {
        let row = sqlx::query(sql!("SELECT {EXAM_COLS} FROM exams e JOIN studies s ON s.study_uid = e.study_uid WHERE e.exam_id = $1"))
            .bind(exam.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(exam_row).transpose()
    }

    async fn exam_of_study(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Option<ExamRecord>, PortError> {
        let row = sqlx::query(sql!("SELECT {EXAM_COLS} FROM exams e JOIN studies s ON s.study_uid = e.study_uid WHERE e.study_uid = $1"))
            .bind(study.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(exam_row).transpose()
    }

    async fn try_claim(
        &self,
        exam: &ExamId,
        who: &Username,
        senior: bool,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<bool, PortError> {
        let r = sqlx::query(
            "UPDATE exams SET claimed_by = $2, lease_until = $3, updated_at = $4, first_claimed_at = COALESCE(first_claimed_at, $4), \
             offer_until = NULL \
             WHERE exam_id = $1 AND state = 'queued' AND (claimed_by IS NULL OR claimed_by = $2 OR lease_until < $4) \
             AND (awaiting_review = 0 OR $5 = 1)",
        )
        .bind(exam.as_str())
        .bind(who.as_str())
        .bind(lease_until.0)
        .bind(now.0)
        .bind(i64::from(senior))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn submit_for_review(
        &self,
        exam: &ExamId,
        who: &Username,
        now: UnixMillis,
    ) -> Result<bool, PortError> {
        let r = sqlx::query(
            "UPDATE exams SET awaiting_review = 1, drafted_by = $2, claimed_by = NULL, lease_until = NULL, updated_at = $3 \
             WHERE exam_id = $1 AND state = 'queued' AND claimed_by = $2 AND lease_until >= $3",
        )
        .bind(exam.as_str())
        .bind(who.as_str())
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn claim_next(
        &self,
        pools: &[PoolId],
        who: &Username,
        fit: &ReaderFit,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<Option<ExamId>, PortError> {
        if pools.is_empty() {
            return Ok(None);
        }
        // Placeholders $5.. are the pools, then the modalities, then the subspecialties; the SQL text
        // holds only placeholders and fixed clauses.
        let placeholders = |from: usize, n: usize| {
            (from..from + n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let list = placeholders(5, pools.len());
        let modalities = if fit.modalities.is_empty() {
            String::new()
        } else {
            format!(
                " AND UPPER(modality) IN ({})",
                placeholders(5 + pools.len(), fit.modalities.len())
            )
        };
        let subspecialties = if fit.subspecialties.is_empty() {
            " AND subspecialty IS NULL".to_string()
        } else {
            format!(
                " AND (subspecialty IS NULL OR subspecialty IN ({}))",
                placeholders(
                    5 + pools.len() + fit.modalities.len(),
                    fit.subspecialties.len()
                )
            )
        };
        // PostgreSQL: the candidate row is locked and rows other replicas hold are skipped, so a busy
        // queue never answers "empty" to a reader who lost a race. SQLite has a single writer.
        let lock = match self.backend {
            Backend::Postgres => " FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let text = sql!(
            "UPDATE exams SET claimed_by = $1, lease_until = $2, updated_at = $3, first_claimed_at = COALESCE(first_claimed_at, $3), \
             offer_until = NULL \
             WHERE exam_id = (SELECT exam_id FROM exams WHERE state = 'queued' \
             AND (claimed_by IS NULL OR lease_until < $3) AND (pool_id IN ({list}) OR escalated_pool IN ({list})) \
             AND (awaiting_review = 0 OR $4 = 1){modalities}{subspecialties} \
             AND (priority_rank = 0 OR offer_until IS NULL OR offer_until < $3 OR offered_to = $1) \
             ORDER BY priority_rank, CASE WHEN offered_to = $1 AND offer_until >= $3 THEN 0 ELSE 1 END, due_at, exam_id LIMIT 1{lock}) \
             AND state = 'queued' AND (claimed_by IS NULL OR lease_until < $3) RETURNING exam_id"
        );
        let mut q = sqlx::query_scalar::<_, String>(text)
            .bind(who.as_str())
            .bind(lease_until.0)
            .bind(now.0)
            .bind(i64::from(fit.senior));
        for p in pools {
            q = q.bind(p.as_str());
        }
        for m in &fit.modalities {
            q = q.bind(m.to_uppercase());
        }
        for sub in &fit.subspecialties {
            q = q.bind(sub.to_lowercase());
        }
        let id = q.fetch_optional(&self.pool).await.map_err(db)?;
        id.map(|s| ExamId::new(s).map_err(|e| corrupt("exams.exam_id", e)))
            .transpose()
    }

    async fn reassign(
        &self,
        exam: &ExamId,
        to: &Username,
        now: UnixMillis,
        lease_until: UnixMillis,
    ) -> Result<bool, PortError> {
        let r = sqlx::query(
            "UPDATE exams SET claimed_by = $2, lease_until = $3, updated_at = $4, offer_until = NULL WHERE exam_id = $1 AND state = 'queued'",
        )
        .bind(exam.as_str())
        .bind(to.as_str())
        .bind(lease_until.0)
        .bind(now.0)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn release(&self, exam: &ExamId, who: &Username) -> Result<bool, PortError> {
        // The releasing reader is remembered as the last one offered it, so the next offer goes to
        // someone else when anyone else is eligible.
        let r = sqlx::query("UPDATE exams SET claimed_by = NULL, lease_until = NULL, offered_to = $2, offer_until = NULL \
                             WHERE exam_id = $1 AND state = 'queued' AND claimed_by = $2")
            .bind(exam.as_str())
            .bind(who.as_str())
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn set_next_escalation(
        &self,
        exam: &ExamId,
        at: Option<UnixMillis>,
    ) -> Result<(), PortError> {
        sqlx::query("UPDATE exams SET escalate_next_at = $2 WHERE exam_id = $1")
            .bind(exam.as_str())
            .bind(at.map(|t| t.0))
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn offer_candidates(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<ExamRecord>, PortError> {
        let rows = sqlx::query(sql!(
            "SELECT {EXAM_COLS} FROM exams e JOIN studies s ON s.study_uid = e.study_uid \
             WHERE e.state = 'queued' AND (e.claimed_by IS NULL OR e.lease_until < $1) \
             AND (e.offer_until IS NULL OR e.offer_until < $1) \
             ORDER BY e.priority_rank, e.due_at, e.exam_id LIMIT $2"
        ))
        .bind(now.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(exam_row).collect()
    }

    async fn reader_loads(&self, now: UnixMillis) -> Result<Vec<ReaderLoad>, PortError> {
        // Open items: live leases plus live offers not yet claimed. Last assignment: the latest offer
        // or first claim that named the reader. Leases are read through the partial index of held
        // exams; `offered_to` stays on signed exams, so the readers ever offered one are walked one
        // name at a time (each step a probe of exams_offered_at) and each reader's live offers and
        // latest offer read from their own range: the cost follows the readers, not the history
        // (docs/catalog-plans.md). The SUM is cast back: PostgreSQL sums BIGINT as NUMERIC.
        let rows = sqlx::query(
            "WITH RECURSIVE offered (username) AS ( \
               SELECT MIN(offered_to) FROM exams \
               UNION ALL \
               SELECT (SELECT MIN(e.offered_to) FROM exams e WHERE e.offered_to > o.username) FROM offered o \
               WHERE o.username IS NOT NULL \
             ) \
             SELECT username, CAST(SUM(open_items) AS BIGINT) AS open_items, MAX(last_at) AS last_at FROM ( \
               SELECT claimed_by AS username, CASE WHEN state = 'queued' AND lease_until >= $1 THEN 1 ELSE 0 END AS open_items, \
                      first_claimed_at AS last_at FROM exams WHERE claimed_by IS NOT NULL \
               UNION ALL \
               SELECT o.username, \
                      (SELECT COUNT(*) FROM exams e WHERE e.offered_to = o.username AND e.offer_until >= $1 \
                       AND e.state = 'queued' AND (e.claimed_by IS NULL OR e.lease_until < $1)) AS open_items, \
                      (SELECT MAX(e.offered_at) FROM exams e WHERE e.offered_to = o.username) AS last_at \
               FROM offered o WHERE o.username IS NOT NULL \
             ) t GROUP BY username",
        )
        .bind(now.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(ReaderLoad {
                    username: uid(r, "username", Username::new)?,
                    open_items: get::<i64>(r, "open_items")?,
                    last_assigned_at: get::<Option<i64>>(r, "last_at")?.map(UnixMillis),
                })
            })
            .collect()
    }

    async fn offer_exam(
        &self,
        exam: &ExamId,
        to: &Username,
        reason: &str,
        now: UnixMillis,
        until: UnixMillis,
        notification: Option<&Notification>,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let r = sqlx::query(
            "UPDATE exams SET offered_to = $2, offered_at = $3, offer_until = $4, offer_reason = $5 \
             WHERE exam_id = $1 AND state = 'queued' AND (claimed_by IS NULL OR lease_until < $3) \
             AND (offer_until IS NULL OR offer_until < $3)",
        )
        .bind(exam.as_str())
        .bind(to.as_str())
        .bind(now.0)
        .bind(until.0)
        .bind(reason)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if r.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        if let Some(n) = notification {
            insert_notification(&mut tx, n).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn save_draft(&self, d: &ReportRecord) -> Result<(), PortError> {
        sqlx::query(
            "INSERT INTO reports (report_id, exam_id, version, status, findings, impression, author, created_at, updated_at, \
             template, sections) VALUES ($1, $2, $3, 'draft', $4, $5, $6, $7, $8, $9, $10) \
             ON CONFLICT (report_id) DO UPDATE SET findings = excluded.findings, impression = excluded.impression, \
             author = excluded.author, updated_at = excluded.updated_at, template = excluded.template, \
             sections = excluded.sections WHERE reports.status = 'draft'",
        )
        .bind(d.report_id.as_str())
        .bind(d.exam_id.as_str())
        .bind(d.version)
        .bind(&d.findings)
        .bind(&d.impression)
        .bind(d.author.as_str())
        .bind(d.created_at.0)
        .bind(d.updated_at.0)
        .bind(&d.template)
        .bind(&d.sections)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn draft_of(&self, exam: &ExamId) -> Result<Option<ReportRecord>, PortError> {
        let row = sqlx::query(sql!("SELECT {REPORT_COLS} FROM reports WHERE exam_id = $1 AND status = 'draft' ORDER BY version DESC LIMIT 1"))
            .bind(exam.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(report_row).transpose()
    }

    async fn finalize_report(
        &self,
        r: &ReportRecord,
        who: &Username,
        now: UnixMillis,
    ) -> Result<bool, PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        let updated = sqlx::query(
            "UPDATE exams SET state = 'signed', claimed_by = NULL, lease_until = NULL, updated_at = $3, signed_at = $3, \
             published_at = $3, sla_breached = CASE WHEN $3 > due_at THEN 1 ELSE 0 END \
             WHERE exam_id = $1 AND state = 'queued' AND claimed_by = $2",
        )
        .bind(r.exam_id.as_str())
        .bind(who.as_str())
        .bind(now.0)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() != 1 {
            tx.rollback().await.map_err(db)?;
            return Ok(false);
        }
        sqlx::query("DELETE FROM reports WHERE exam_id = $1 AND status = 'draft'")
            .bind(r.exam_id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        insert_final_report(&mut tx, r).await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn turnaround_rows(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<TurnaroundRow>, PortError> {
        let rows = sqlx::query(
            "SELECT e.pool_id, e.priority, s.first_received_at, e.created_at, e.first_claimed_at, e.signed_at, \
             e.published_at, e.due_at, e.sla_breached FROM exams e JOIN studies s ON s.study_uid = e.study_uid \
             WHERE e.created_at >= $1 AND e.created_at < $2 ORDER BY e.created_at, e.exam_id LIMIT $3",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let priority: String = get(r, "priority")?;
                Ok(TurnaroundRow {
                    pool: uid(r, "pool_id", PoolId::new)?,
                    priority: Priority::parse(&priority)
                        .ok_or_else(|| corrupt("exams.priority", &priority))?,
                    received_at: UnixMillis(get(r, "first_received_at")?),
                    routed_at: UnixMillis(get(r, "created_at")?),
                    first_claimed_at: get::<Option<i64>>(r, "first_claimed_at")?.map(UnixMillis),
                    signed_at: get::<Option<i64>>(r, "signed_at")?.map(UnixMillis),
                    published_at: get::<Option<i64>>(r, "published_at")?.map(UnixMillis),
                    due_at: UnixMillis(get(r, "due_at")?),
                    signed_late: get::<i64>(r, "sla_breached")? != 0,
                })
            })
            .collect()
    }

    async fn worklist_depth(&self) -> Result<Vec<(PoolId, Priority, u64)>, PortError> {
        let rows = sqlx::query(
            "SELECT pool_id, priority, COUNT(*) AS n FROM exams WHERE state = 'queued' \
             GROUP BY pool_id, priority ORDER BY pool_id, priority",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let priority: String = get(r, "priority")?;
                Ok((
                    uid(r, "pool_id", PoolId::new)?,
                    Priority::parse(&priority)
                        .ok_or_else(|| corrupt("exams.priority", &priority))?,
                    count(get(r, "n")?),
                ))
            })
            .collect()
    }

    async fn pool_turnaround(
        &self,
        now: UnixMillis,
        bounds_ms: &[i64],
    ) -> Result<Vec<PoolTurnaround>, PortError> {
        // PostgreSQL sums BIGINT as NUMERIC, which the Any driver cannot decode: every sum is cast
        // back. The bounds are placeholders $2.. and the text holds only fixed clauses.
        let took = "e.signed_at - s.first_received_at";
        let buckets: String = (0..bounds_ms.len())
            .map(|i| {
                format!(
                    ", CAST(SUM(CASE WHEN e.signed_at IS NOT NULL AND {took} <= ${} THEN 1 ELSE 0 END) AS BIGINT) AS le{i}",
                    i + 2
                )
            })
            .collect();
        let text = sql!(
            "SELECT e.pool_id, \
             CAST(SUM(CASE WHEN e.sla_breached = 1 OR (e.state = 'queued' AND e.due_at < $1) THEN 1 ELSE 0 END) AS BIGINT) AS breaches, \
             CAST(SUM(CASE WHEN e.signed_at IS NOT NULL THEN 1 ELSE 0 END) AS BIGINT) AS signed, \
             CAST(SUM(CASE WHEN e.signed_at IS NOT NULL THEN {took} ELSE 0 END) AS BIGINT) AS took_ms{buckets} \
             FROM exams e JOIN studies s ON s.study_uid = e.study_uid GROUP BY e.pool_id ORDER BY e.pool_id"
        );
        let mut q = sqlx::query(text).bind(now.0);
        for b in bounds_ms {
            q = q.bind(*b);
        }
        let rows = q.fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(PoolTurnaround {
                    pool: uid(r, "pool_id", PoolId::new)?,
                    sla_breaches: count(get(r, "breaches")?),
                    signed: count(get(r, "signed")?),
                    received_to_signed_sum_ms: get(r, "took_ms")?,
                    received_to_signed_le: (0..bounds_ms.len())
                        .map(|i| get(r, &format!("le{i}")).map(count))
                        .collect::<Result<_, _>>()?,
                })
            })
            .collect()
    }

    async fn report(&self, report: &ReportId) -> Result<Option<ReportRecord>, PortError> {
        let row = sqlx::query(sql!(
            "SELECT {REPORT_COLS} FROM reports WHERE report_id = $1"
        ))
        .bind(report.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.as_ref().map(report_row).transpose()
    }

    async fn final_report_of(&self, exam: &ExamId) -> Result<Option<ReportRecord>, PortError> {
        let row = sqlx::query(sql!("SELECT {REPORT_COLS} FROM reports WHERE exam_id = $1 AND status = 'final' ORDER BY version DESC LIMIT 1"))
            .bind(exam.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(report_row).transpose()
    }

    async fn latest_final_version(&self, exam: &ExamId) -> Result<Option<i64>, PortError> {
        sqlx::query_scalar(
            "SELECT MAX(version) FROM reports WHERE exam_id = $1 AND status = 'final'",
        )
        .bind(exam.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn final_reports_of(&self, exam: &ExamId) -> Result<Vec<ReportRecord>, PortError> {
        crate::lifecycle::final_reports_of(self, exam).await
    }

    async fn revocation_of(&self, exam: &ExamId) -> Result<Option<RevocationRecord>, PortError> {
        crate::lifecycle::revocation_of(self, exam).await
    }

    async fn amend_report(
        &self,
        report: &ReportRecord,
        previous_version: i64,
        notification: &Notification,
    ) -> Result<LifecycleOutcome, PortError> {
        crate::lifecycle::amend_report(self, report, previous_version, notification).await
    }

    async fn revoke_report(
        &self,
        revocation: &RevocationRecord,
        notification: &Notification,
    ) -> Result<LifecycleOutcome, PortError> {
        crate::lifecycle::revoke_report(self, revocation, notification).await
    }

    async fn results_of_patient(
        &self,
        patient: &PatientKey,
    ) -> Result<Vec<(ExamRecord, ReportRecord)>, PortError> {
        let report_cols = REPORT_COLS
            .split(", ")
            .map(|c| format!("r.{c} AS r_{c}"))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(sql!(
            "SELECT {EXAM_COLS}, {report_cols} FROM exams e JOIN studies s ON s.study_uid = e.study_uid \
             JOIN reports r ON r.exam_id = e.exam_id AND r.status = 'final' \
             WHERE e.patient_key = $1 AND r.version = (SELECT MAX(r2.version) FROM reports r2 \
             WHERE r2.exam_id = e.exam_id AND r2.status = 'final') ORDER BY r.signed_at DESC, r.version DESC LIMIT 200"
        ))
        .bind(&patient.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut out = Vec::new();
        for row in &rows {
            let exam = exam_row(row)?;
            let status: String = get(row, "r_status")?;
            let report = ReportRecord {
                report_id: uid(row, "r_report_id", ReportId::new)?,
                exam_id: uid(row, "r_exam_id", ExamId::new)?,
                version: get(row, "r_version")?,
                status: ReportStatus::parse(&status)
                    .ok_or_else(|| corrupt("reports.status", &status))?,
                findings: get(row, "r_findings")?,
                impression: get(row, "r_impression")?,
                author: uid(row, "r_author", Username::new)?,
                created_at: UnixMillis(get(row, "r_created_at")?),
                updated_at: UnixMillis(get(row, "r_updated_at")?),
                signed_at: get::<Option<i64>>(row, "r_signed_at")?.map(UnixMillis),
                key_id: get(row, "r_key_id")?,
                algorithm: get(row, "r_algorithm")?,
                signature: get(row, "r_signature")?,
                document: get(row, "r_document")?,
                template: get(row, "r_template")?,
                sections: get(row, "r_sections")?,
                countersignature: get(row, "r_countersignature")?,
            };
            out.push((exam, report));
        }
        Ok(out)
    }

    async fn lab_message(
        &self,
        source: yilian_domain::lab::LabSource,
        sending_facility: &str,
        control_id: &str,
    ) -> Result<Option<LabMessageRecord>, PortError> {
        self.lab_message_by_key(source, sending_facility, control_id)
            .await
    }

    async fn insert_lab_message(
        &self,
        message: &NewLabMessage,
    ) -> Result<LabInsertOutcome, PortError> {
        self.insert_lab(message).await
    }

    async fn latest_lab_panel_of_order(
        &self,
        order: &LabOrderRef,
    ) -> Result<Option<yilian_domain::LabPanelId>, PortError> {
        self.latest_lab_panel(order).await
    }

    async fn lab_panel(
        &self,
        panel: &yilian_domain::LabPanelId,
    ) -> Result<Option<LabPanelRecord>, PortError> {
        self.lab_panel_by_id(panel).await
    }

    async fn lab_panels_of_patient(
        &self,
        patient: &PatientKey,
        limit: i64,
    ) -> Result<Vec<LabPanelRecord>, PortError> {
        self.lab_panels_by_patient(patient, limit).await
    }

    async fn published_lab_panels(
        &self,
        query: &yilian_app::ports::PublishedLabQuery,
    ) -> Result<Vec<yilian_app::ports::PublishedLabPanel>, PortError> {
        self.published_panels(query).await
    }

    async fn lab_patient_keys(
        &self,
        issuers: &[String],
        patient_id: &str,
    ) -> Result<Vec<PatientKey>, PortError> {
        self.lab_keys_by_identifier(issuers, patient_id).await
    }

    async fn lab_patient_keys_by_prefix(&self, prefix: &str) -> Result<Vec<PatientKey>, PortError> {
        self.lab_keys_by_prefix(prefix).await
    }

    async fn published_lab_identities(
        &self,
        patients: &[PatientKey],
    ) -> Result<Vec<LabIdentityRow>, PortError> {
        self.lab_identities(patients).await
    }

    async fn lab_review_queue(
        &self,
        pool: &PoolId,
        limit: i64,
    ) -> Result<Vec<yilian_app::ports::LabPanelRecord>, PortError> {
        self.lab_review_queue_of(pool, limit).await
    }

    async fn release_lab_panel(
        &self,
        signoff: &yilian_app::ports::LabSignoff,
        audit: &AuditEvent,
    ) -> Result<bool, PortError> {
        self.release_panel(signoff, audit).await
    }

    async fn lab_signoff(
        &self,
        panel: &yilian_domain::LabPanelId,
    ) -> Result<Option<yilian_app::ports::LabSignoff>, PortError> {
        self.signoff_of(panel).await
    }

    async fn critical_cases(
        &self,
        filter: &yilian_app::ports::CriticalFilter,
    ) -> Result<Vec<yilian_app::ports::CriticalCaseRecord>, PortError> {
        self.cases(filter).await
    }

    async fn critical_case(
        &self,
        case_id: &str,
    ) -> Result<Option<yilian_app::ports::CriticalCaseRecord>, PortError> {
        self.case_by_id(case_id).await
    }

    async fn critical_cases_of_panel(
        &self,
        panel: &yilian_domain::LabPanelId,
    ) -> Result<Vec<yilian_app::ports::CriticalCaseRecord>, PortError> {
        self.cases_of_panel(panel).await
    }

    async fn acknowledge_critical(
        &self,
        case_id: &str,
        ack: &yilian_app::ports::CriticalAck,
        audit: &AuditEvent,
    ) -> Result<bool, PortError> {
        self.acknowledge_case(case_id, ack, audit).await
    }

    async fn insert_recognition_decision(
        &self,
        d: &yilian_app::ports::RecognitionDecisionRecord,
        audit: &AuditEvent,
    ) -> Result<(), PortError> {
        self.insert_decision(d, audit).await
    }

    async fn recognition_decisions(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<yilian_app::ports::RecognitionDecisionRecord>, PortError> {
        self.decisions_between(from, to, limit).await
    }

    async fn critical_cases_due(
        &self,
        now: UnixMillis,
        limit: i64,
    ) -> Result<Vec<yilian_app::ports::CriticalCaseRecord>, PortError> {
        self.cases_due(now, limit).await
    }

    async fn escalate_critical(
        &self,
        case_id: &str,
        escalations: i64,
        now: UnixMillis,
        next: Option<UnixMillis>,
        notification: &Notification,
    ) -> Result<bool, PortError> {
        self.escalate_case(case_id, escalations, now, next, notification)
            .await
    }

    async fn publish_key(&self, k: &PublicKeyRecord) -> Result<(), PortError> {
        let from = parse_time(&k.valid_from).ok_or_else(|| corrupt("valid_from", &k.valid_from))?;
        let to = parse_time(&k.valid_to).ok_or_else(|| corrupt("valid_to", &k.valid_to))?;
        sqlx::query(
            "INSERT INTO signing_keys (key_id, owner, algorithm, public_key, valid_from, valid_to) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (key_id) DO NOTHING",
        )
        .bind(&k.key_id)
        .bind(&k.owner)
        .bind(&k.algorithm)
        .bind(&k.public_key)
        .bind(from)
        .bind(to)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn public_keys(&self) -> Result<Vec<PublicKeyRecord>, PortError> {
        let rows = sqlx::query("SELECT key_id, owner, algorithm, public_key, valid_from, valid_to FROM signing_keys ORDER BY owner, valid_from")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(PublicKeyRecord {
                    key_id: get(r, "key_id")?,
                    owner: get(r, "owner")?,
                    algorithm: get(r, "algorithm")?,
                    public_key: get(r, "public_key")?,
                    valid_from: format_time(get(r, "valid_from")?),
                    valid_to: format_time(get(r, "valid_to")?),
                })
            })
            .collect()
    }

    async fn insert_token(
        &self,
        hash: &str,
        owner: &Username,
        label: &str,
        created: UnixMillis,
        expires: UnixMillis,
    ) -> Result<(), PortError> {
        sqlx::query("INSERT INTO api_tokens (token_hash, username, label, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(hash)
            .bind(owner.as_str())
            .bind(label)
            .bind(created.0)
            .bind(expires.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn token_owner(
        &self,
        hash: &str,
        now: UnixMillis,
    ) -> Result<Option<Username>, PortError> {
        let owner: Option<String> =
            sqlx::query_scalar("SELECT username FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL AND expires_at > $2")
                .bind(hash)
                .bind(now.0)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        owner
            .map(Username::new)
            .transpose()
            .map_err(|e| corrupt("api_tokens.username", e))
    }

    async fn verify_audit_chain(&self) -> Result<AuditChainReport, PortError> {
        crate::audit::verify(&self.pool).await
    }

    async fn audit(&self, e: &AuditEvent) -> Result<(), PortError> {
        let mut tx = self.pool.begin().await.map_err(db)?;
        insert_audit(&mut tx, e).await?;
        tx.commit().await.map_err(db)
    }

    async fn audit_trail(
        &self,
        from: UnixMillis,
        to: UnixMillis,
        limit: i64,
    ) -> Result<Vec<AuditRecord>, PortError> {
        let rows = sqlx::query(
            "SELECT seq, hash, at, actor, action, resource_type, resource_id, patient_key, outcome, detail \
             FROM audit_events WHERE at >= $1 AND at < $2 ORDER BY at, seq, event_id LIMIT $3",
        )
        .bind(from.0)
        .bind(to.0)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(AuditRecord {
                    seq: get(r, "seq")?,
                    hash: get(r, "hash")?,
                    event: audit_event_row(r)?,
                })
            })
            .collect()
    }

    async fn lease_job(
        &self,
        job: &str,
        holder: &str,
        now: UnixMillis,
        until: UnixMillis,
    ) -> Result<bool, PortError> {
        SqlCatalog::lease_job(self, job, holder, now, until).await
    }

    async fn release_job(&self, job: &str, holder: &str) -> Result<(), PortError> {
        SqlCatalog::release_job(self, job, holder).await
    }

    async fn raise_signal(
        &self,
        signal: &str,
        by: &str,
        now: UnixMillis,
    ) -> Result<i64, PortError> {
        SqlCatalog::raise_signal(self, signal, by, now).await
    }

    async fn signal_generation(&self, signal: &str) -> Result<i64, PortError> {
        SqlCatalog::signal_generation(self, signal).await
    }

    async fn audit_events(&self, limit: i64) -> Result<Vec<AuditEvent>, PortError> {
        let rows = sqlx::query(
            "SELECT at, actor, action, resource_type, resource_id, patient_key, outcome, detail FROM audit_events \
             ORDER BY at DESC, event_id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(audit_event_row).collect()
    }
}

/// An `audit_events` row's event fields.
fn audit_event_row(r: &AnyRow) -> Result<AuditEvent, PortError> {
    Ok(AuditEvent {
        at: UnixMillis(get(r, "at")?),
        actor: get(r, "actor")?,
        action: get(r, "action")?,
        resource_type: get(r, "resource_type")?,
        resource_id: get(r, "resource_id")?,
        patient_key: get::<Option<String>>(r, "patient_key")?.map(PatientKey),
        outcome: get(r, "outcome")?,
        detail: get(r, "detail")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Exams signed before version 5 get their turnaround from their final report and first claim.
    #[tokio::test]
    async fn the_turnaround_migration_fills_exams_read_before_it() {
        sqlx::any::install_default_drivers();
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}/c.db?mode=rwc", dir.path().display());
        let pool = AnyPool::connect(&url).await.unwrap();
        for m in MIGRATOR.iter().filter(|m| m.version < 5) {
            pool.execute(sqlx::raw_sql(m.sql.clone())).await.unwrap();
        }
        pool.execute(sqlx::raw_sql(sqlx::AssertSqlSafe(
            "INSERT INTO patients VALUES ('pk', 0);
             INSERT INTO studies (study_uid, site_id, patient_key, issuer, patient_id, state, first_received_at, last_received_at)
               VALUES ('2.25.1', 's', 'pk', 'HX', 'p1', 'routed', 0, 0), ('2.25.2', 's', 'pk', 'HX', 'p1', 'routed', 0, 0),
                      ('2.25.3', 's', 'pk', 'HX', 'p1', 'routed', 0, 0);
             INSERT INTO exams (exam_id, study_uid, site_id, patient_key, kind, modality, pool_id, priority, priority_rank, due_at,
                                route_rule, route_reason, state, created_at, updated_at)
               VALUES ('late', '2.25.1', 's', 'pk', 'imaging', 'CT', 'p', 'routine', 2, 1000, 'r', 'r', 'signed', 10, 10),
                      ('ontime', '2.25.2', 's', 'pk', 'imaging', 'CT', 'p', 'routine', 2, 1000, 'r', 'r', 'signed', 10, 10),
                      ('queued', '2.25.3', 's', 'pk', 'imaging', 'CT', 'p', 'routine', 2, 1000, 'r', 'r', 'queued', 10, 10);
             INSERT INTO reports (report_id, exam_id, version, status, findings, impression, author, created_at, updated_at, signed_at)
               VALUES ('r1', 'late', 1, 'final', 'f', 'i', 'a', 0, 0, 1500), ('r2', 'ontime', 1, 'final', 'f', 'i', 'a', 0, 0, 900);
             INSERT INTO audit_events (event_id, at, actor, action, resource_type, resource_id, outcome, detail)
               VALUES ('e1', 300, 'a', 'exam.claim', 'exam', 'late', 'ok', ''), ('e2', 200, 'b', 'exam.claim', 'exam', 'late', 'ok', ''),
                      ('e3', 400, 'a', 'report.sign', 'report', 'ontime', 'ok', ''), ('e4', 50, 'a', 'exam.claim', 'exam', 'queued', 'ok', '');",
        )))
        .await
        .unwrap();
        let v5 = MIGRATOR.iter().find(|m| m.version == 5).unwrap();
        pool.execute(sqlx::raw_sql(v5.sql.clone())).await.unwrap();
        type Turnaround = (String, Option<i64>, Option<i64>, Option<i64>, i64);
        let rows: Vec<Turnaround> = sqlx::query_as(
            "SELECT exam_id, first_claimed_at, signed_at, published_at, sla_breached FROM exams ORDER BY exam_id",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert_eq!(
            rows,
            vec![
                ("late".into(), Some(200), Some(1500), Some(1500), 1),
                ("ontime".into(), None, Some(900), Some(900), 0),
                ("queued".into(), Some(50), None, None, 0),
            ]
        );
    }

    #[test]
    fn sqlite_paths_and_redaction() {
        assert_eq!(
            sqlite_path("sqlite://yilian-data/catalog.db?mode=rwc"),
            Some("yilian-data/catalog.db")
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://***@h:5432/db"
        );
        assert_eq!(redact("sqlite://x.db"), "sqlite://x.db");
    }
}
