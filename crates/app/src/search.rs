//! Search and retrieve for DICOM front ends (QIDO-RS, C-FIND, C-GET, C-MOVE, WADO-RS metadata):
//! the caller's scope becomes a [`SearchScope`] applied inside the catalog query, and every search
//! and metadata read is audited.

use yilian_domain::{Role, SeriesInstanceUid, SopInstanceUid, StudyInstanceUid};
use yilian_formats::query::{Key, Matcher, Query, QueryLevel, QueryMatch};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{BlobStream, InstanceRecord, PortError, SearchScope};
use futures::StreamExt;

/// The most matches one search returns; a larger `limit` is lowered to it (QIDO pages with
/// `offset`).
pub const MAX_MATCHES: u32 = 1000;

/// The most instances one retrieve (C-GET, C-MOVE) may cover.
pub const MAX_RETRIEVE: u32 = 100_000;

/// Search results with what the caller should be told about the query.
#[derive(Clone, Debug)]
pub struct SearchResult {
    pub matches: Vec<QueryMatch>,
    /// The limit was lowered to [`MAX_MATCHES`] (QIDO answers with a Warning header).
    pub truncated: bool,
}

impl Hub {
    /// The studies a principal may find: technicians their site's, readers their pools',
    /// clinicians published (signed) results.
    pub fn search_scope(&self, who: &Principal) -> SearchScope {
        match who.role {
            Role::SiteTech => SearchScope::Site(who.site.clone()),
            Role::Reader => SearchScope::Pools(who.pools.clone()),
            Role::Clinician => SearchScope::Signed,
            Role::Admin | Role::Auditor => SearchScope::Nothing,
        }
    }

    /// Runs a query within the caller's scope. Audited with the level and the matched studies.
    pub async fn search(&self, who: &Principal, query: &Query) -> Result<SearchResult, AppError> {
        require(who, Action::ViewStudy)?;
        let mut q = query.clone();
        let truncated = q.limit.is_none_or(|l| l > MAX_MATCHES);
        q.limit = Some(q.limit.unwrap_or(MAX_MATCHES).min(MAX_MATCHES));
        let matches = self.catalog.search(&q, &self.search_scope(who)).await?;
        let truncated = truncated && matches.len() as u32 == MAX_MATCHES;
        let mut studies: Vec<&str> = matches.iter().map(|m| m.study_uid.as_str()).collect();
        studies.dedup();
        let shown = studies.len().min(50);
        self.audit(
            who,
            "dicom.search",
            "query",
            q.level.as_str(),
            None,
            "ok",
            format!(
                "{} matches; studies {}{}",
                matches.len(),
                studies[..shown].join(","),
                if studies.len() > shown { ",…" } else { "" }
            ),
        )
        .await?;
        Ok(SearchResult { matches, truncated })
    }

    /// The instances a retrieve (C-GET, C-MOVE, WADO-RS series) covers: the query's unique keys at
    /// its level, within the caller's scope, as stored records. Audited once.
    pub async fn instances_to_retrieve(
        &self,
        who: &Principal,
        query: &Query,
    ) -> Result<Vec<InstanceRecord>, AppError> {
        require(who, Action::ViewStudy)?;
        let mut q = Query::new(QueryLevel::Instance);
        for key in [
            Key::StudyInstanceUid,
            Key::SeriesInstanceUid,
            Key::SopInstanceUid,
        ] {
            if key.level() <= query.level
                && let Some(m) = query.filter(key)
            {
                q.filters.push((key, m.clone()));
            }
        }
        if query.level == QueryLevel::Patient
            && let Some(m) = query.filter(Key::PatientId)
        {
            q.filters.push((Key::PatientId, m.clone()));
        }
        if q.filters.is_empty() {
            return Err(AppError::Invalid(
                "a retrieve needs the unique key of its level (e.g. Study Instance UID)".into(),
            ));
        }
        q.limit = Some(MAX_RETRIEVE);
        let matches = self.catalog.search(&q, &self.search_scope(who)).await?;
        let mut out = Vec::with_capacity(matches.len());
        for m in &matches {
            let Some(sop) = m.sop_instance_uid.as_deref() else {
                continue;
            };
            let sop = SopInstanceUid::new(sop.to_string()).map_err(|e| {
                AppError::Port(crate::ports::PortError::Corrupt(format!("stored UID: {e}")))
            })?;
            if let Some(rec) = self.catalog.instance(&sop).await? {
                out.push(rec);
            }
        }
        let mut studies: Vec<&str> = out.iter().map(|r| r.study_uid.as_str()).collect();
        studies.dedup();
        self.audit(
            who,
            "dicom.retrieve",
            "query",
            query.level.as_str(),
            None,
            "ok",
            format!("{} instances; studies {}", out.len(), studies.join(",")),
        )
        .await?;
        Ok(out)
    }

    /// WADO-RS metadata of a study, series or instance in scope, from the catalog (one query, no blob
    /// reads) — except instances stored before metadata was kept, which are read once from their blob.
    /// Bulk data references start with [`yilian_formats::dicom::BULK_PLACEHOLDER`].
    pub async fn metadata(
        &self,
        who: &Principal,
        study: &StudyInstanceUid,
        series: Option<&SeriesInstanceUid>,
        sop: Option<&SopInstanceUid>,
    ) -> Result<Vec<(SopInstanceUid, serde_json::Value)>, AppError> {
        let record = self.study_in_scope(who, study).await?;
        let docs = self.catalog.metadata(study, series, sop).await?;
        let mut out = Vec::with_capacity(docs.len());
        for (uid, text) in docs {
            let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
                AppError::Port(crate::ports::PortError::Corrupt(format!(
                    "stored metadata of {uid}: {e}"
                )))
            })?;
            out.push((uid, v));
        }
        if out.is_empty() {
            // Older instances: derive from the blobs.
            for rec in self.catalog.study_instances(study).await? {
                if series.is_some_and(|s| s != &rec.series_uid)
                    || sop.is_some_and(|s| s != &rec.sop_instance_uid)
                {
                    continue;
                }
                let bytes = self.blobs.get(&rec.blob_key).await?;
                let parsed = yilian_formats::parse_bytes(&bytes).map_err(|e| {
                    AppError::Port(crate::ports::PortError::Corrupt(format!(
                        "stored instance: {e}"
                    )))
                })?;
                out.push((rec.sop_instance_uid, parsed.metadata));
            }
        }
        if out.is_empty() {
            return Err(AppError::NotFound(if sop.is_some() {
                "instance"
            } else {
                "series"
            }));
        }
        self.audit(
            who,
            "dicom.metadata",
            "study",
            study.as_str(),
            Some(&record.patient_key),
            "ok",
            format!("{} instances", out.len()),
        )
        .await?;
        Ok(out)
    }
}

/// A query for one study (and optionally one series), as WADO-RS and C-GET use it.
pub fn uid_query(
    level: QueryLevel,
    study: &StudyInstanceUid,
    series: Option<&SeriesInstanceUid>,
    sop: Option<&SopInstanceUid>,
) -> Query {
    let mut q = Query::new(level);
    q.filters
        .push((Key::StudyInstanceUid, Matcher::Single(study.to_string())));
    if let Some(s) = series {
        q.filters
            .push((Key::SeriesInstanceUid, Matcher::Single(s.to_string())));
    }
    if let Some(s) = sop {
        q.filters
            .push((Key::SopInstanceUid, Matcher::Single(s.to_string())));
    }
    q
}

impl Hub {
    /// The stored bytes of an instance, checked against its checksum. Only for records that came
    /// from an audited retrieve ([`Hub::instances_to_retrieve`]).
    pub async fn instance_bytes(&self, rec: &InstanceRecord) -> Result<bytes::Bytes, AppError> {
        self.checked_blob(rec).await
    }

    /// The stored bytes of an instance for a response. Up to [`VERIFY_WHOLE_BYTES`] they are read
    /// whole and checked against the catalog's SHA-256 before the first byte leaves (one chunk).
    /// Larger ones are streamed from the store chunk by chunk, hashed on the way; a mismatch (or a
    /// short blob) ends the stream with an error instead of its last chunk, so the response is cut
    /// off without its closing boundary and the client sees the failure. Memory stays bounded by the
    /// store's chunk size whatever the instance size.
    pub async fn instance_stream(&self, rec: &InstanceRecord) -> Result<BlobStream, AppError> {
        if rec.size_bytes <= VERIFY_WHOLE_BYTES {
            let bytes = self.checked_blob(rec).await?;
            return Ok(futures::stream::once(async move { Ok(bytes) }).boxed());
        }
        let inner = self.blobs.get_stream(&rec.blob_key).await?;
        Ok(verified(inner, rec.blob_key.clone(), rec.sha256.clone()))
    }

    /// The instances of a study or series in scope (WADO-RS retrieve); bytes are fetched one by one
    /// with [`Hub::instance_bytes`] so a large study is streamed, not held in memory.
    pub async fn instances_of(
        &self,
        who: &Principal,
        study: &StudyInstanceUid,
        series: Option<&SeriesInstanceUid>,
    ) -> Result<Vec<InstanceRecord>, AppError> {
        self.study_in_scope(who, study).await?;
        let level = if series.is_some() {
            QueryLevel::Series
        } else {
            QueryLevel::Study
        };
        let recs = self
            .instances_to_retrieve(who, &uid_query(level, study, series, None))
            .await?;
        if recs.is_empty() {
            return Err(AppError::NotFound("series"));
        }
        Ok(recs)
    }

    /// One element's value (WADO-RS bulkdata) of an instance in scope.
    pub async fn bulkdata(
        &self,
        who: &Principal,
        study: &StudyInstanceUid,
        series: &SeriesInstanceUid,
        sop: &SopInstanceUid,
        path: &str,
    ) -> Result<Vec<u8>, AppError> {
        let (_, bytes) = self.retrieve_instance(who, study, series, sop).await?;
        let path = path.to_string();
        tokio::task::spawn_blocking(move || {
            let obj = yilian_formats::dicom::open(&bytes)
                .map_err(|e| AppError::Port(crate::ports::PortError::Corrupt(e.to_string())))?;
            yilian_formats::bulk::element_bytes(&obj, &path)
                .map_err(|e| AppError::Invalid(e.to_string()))
        })
        .await
        .map_err(|e| AppError::Port(crate::ports::PortError::Unavailable(e.to_string())))?
    }

    /// Frames (1-based) of an instance in scope, as stored: native frames sliced, compressed ones as
    /// their fragments. Returns the instance's transfer syntax and, per frame, (bytes, compressed).
    pub async fn frames(
        &self,
        who: &Principal,
        study: &StudyInstanceUid,
        series: &SeriesInstanceUid,
        sop: &SopInstanceUid,
        frames: Vec<u32>,
    ) -> Result<(String, Vec<(Vec<u8>, bool)>), AppError> {
        let (rec, bytes) = self.retrieve_instance(who, study, series, sop).await?;
        let out = tokio::task::spawn_blocking(move || {
            let obj = yilian_formats::dicom::open(&bytes)
                .map_err(|e| AppError::Port(crate::ports::PortError::Corrupt(e.to_string())))?;
            frames
                .into_iter()
                .map(|f| {
                    yilian_formats::bulk::frame_bytes(&obj, f)
                        .map_err(|e| AppError::Invalid(e.to_string()))
                })
                .collect::<Result<Vec<_>, _>>()
        })
        .await
        .map_err(|e| AppError::Port(crate::ports::PortError::Unavailable(e.to_string())))??;
        Ok((rec.transfer_syntax_uid, out))
    }
}

/// Instances up to this size are checked whole before they are sent; larger ones are streamed.
pub const VERIFY_WHOLE_BYTES: i64 = 16 * 1024 * 1024;

/// Passes `inner`'s chunks on while hashing them; at the end, an error instead of the end when the
/// SHA-256 is not `expected`.
fn verified(inner: BlobStream, key: String, expected: String) -> BlobStream {
    use sha2::{Digest, Sha256};
    struct State {
        inner: BlobStream,
        hasher: Option<Sha256>,
        key: String,
        expected: String,
    }
    let start = State {
        inner,
        hasher: Some(Sha256::new()),
        key,
        expected,
    };
    futures::stream::unfold(start, |mut s| async move {
        let hasher = s.hasher.as_mut()?;
        match s.inner.next().await {
            Some(Ok(chunk)) => {
                hasher.update(&chunk);
                Some((Ok(chunk), s))
            }
            Some(Err(e)) => {
                s.hasher = None;
                Some((Err(e), s))
            }
            None => {
                let digest = hex::encode(s.hasher.take()?.finalize());
                if digest == s.expected {
                    None
                } else {
                    tracing::error!(blob = %s.key, "blob checksum mismatch (streamed)");
                    let e =
                        PortError::Corrupt(format!("blob {} does not match its checksum", s.key));
                    Some((Err(e), s))
                }
            }
        }
    })
    .boxed()
}
