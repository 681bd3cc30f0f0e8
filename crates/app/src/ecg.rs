//! ECG (心电图) as an exam: what the hub reads from every ECG it stores (trace → the hub's own
//! measurements → alerts that make it stat), the upload of ECG files in other formats (HL7 aECG,
//! SCP-ECG) filed as DICOM instances through the one ingest use case, and what a reader opens: the
//! measurements beside the device's, the paper rendering, and the patient's prior ECG from any site.

use bytes::Bytes;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use yilian_domain::ecg::{EcgAnalysis, EcgRecord, EcgSourceFormat, GlobalMeasurements};
use yilian_domain::{
    ExamId, ExamKind, PatientKey, Role, SiteId, SopInstanceUid, StudyInstanceUid, UnixMillis,
    mask_identifier, mask_name,
};
use yilian_policy::{EcgAlertFacts, EcgAlertRules, ecg_alerts};
use yilian_render::ecg::{EcgHeader, EcgPage, Lang, PaperOptions};

use crate::access::{Action, Principal, require};
use crate::error::AppError;
use crate::hub::Hub;
use crate::ingest::{EcgSource, Failure, Input, Stored, blob_key};
use crate::ports::{EcgRow, ExamRecord, PortError};
use crate::routing::RouteOutcome;

/// The largest ECG instance the hub reads into memory to measure (a 24-hour ambulatory recording
/// at 3 × 500 Hz is ~260 MB of samples; such files are refused here rather than exhausting memory).
pub const MAX_ECG_INSTANCE_BYTES: u64 = 64 * 1024 * 1024;

/// What the hub read from one ECG at ingest.
#[derive(Clone, Debug)]
pub(crate) struct EcgFacts {
    record_summary: Value,
    acquired_at: Option<String>,
    sample_rate_hz: f64,
    samples_per_lead: i64,
    leads: String,
    heart_rate_bpm: Option<f64>,
    alerts: Vec<String>,
    source: EcgSourceFormat,
}

impl EcgFacts {
    pub(crate) fn into_row(
        self,
        sop: &SopInstanceUid,
        study: &StudyInstanceUid,
        patient_key: &PatientKey,
        site: &SiteId,
        now: UnixMillis,
        source: Option<&EcgSource>,
    ) -> EcgRow {
        EcgRow {
            sop_instance_uid: sop.clone(),
            study_uid: study.clone(),
            patient_key: patient_key.clone(),
            site: site.clone(),
            acquired_at: self.acquired_at,
            received_at: now,
            source_format: source
                .map(|s| s.format)
                .unwrap_or(self.source)
                .as_str()
                .to_string(),
            source_blob_key: source.map(|s| s.blob_key.clone()),
            source_sha256: source.map(|s| s.sha256.clone()),
            sample_rate_hz: self.sample_rate_hz,
            samples_per_lead: self.samples_per_lead,
            leads: self.leads,
            heart_rate_bpm: self.heart_rate_bpm,
            alerts: Value::from(self.alerts).to_string(),
            summary: self.record_summary.to_string(),
        }
    }
}

/// Reads the waveform of an ECG instance, measures it and applies the alert policy (off the async
/// executor). `Err` is a reason the site can act on.
pub(crate) async fn examine_ecg(input: &Input, rules: &EcgAlertRules) -> Result<EcgFacts, String> {
    let bytes = match input {
        Input::Memory(b) => b.clone(),
        Input::File(path) => {
            let size = tokio::fs::metadata(path)
                .await
                .map_err(|e| format!("the spooled instance cannot be read: {e}"))?
                .len();
            if size > MAX_ECG_INSTANCE_BYTES {
                return Err(format!(
                    "the ECG instance is {size} bytes; the hub measures ECGs up to {MAX_ECG_INSTANCE_BYTES} bytes"
                ));
            }
            Bytes::from(
                tokio::fs::read(path)
                    .await
                    .map_err(|e| format!("the spooled instance cannot be read: {e}"))?,
            )
        }
    };
    if bytes.len() as u64 > MAX_ECG_INSTANCE_BYTES {
        return Err(format!(
            "the ECG instance is {} bytes; the hub measures ECGs up to {MAX_ECG_INSTANCE_BYTES} bytes",
            bytes.len()
        ));
    }
    let rules = rules.clone();
    tokio::task::spawn_blocking(move || {
        let record = yilian_formats::ecg::from_dicom_bytes(&bytes)
            .map_err(|e| format!("ECG waveform unusable: {e}"))?;
        Ok(facts_of(&record, &rules))
    })
    .await
    .map_err(|e| format!("the ECG could not be measured: {e}"))?
}

fn facts_of(record: &EcgRecord, rules: &EcgAlertRules) -> EcgFacts {
    let analysis = yilian_analysis::analyze(record);
    let alerts = ecg_alerts(
        &EcgAlertFacts {
            hub_heart_rate_bpm: analysis.measurements.heart_rate_bpm,
            device_heart_rate_bpm: record.device_measurements.heart_rate_bpm,
            interpretation: record.interpretation.clone(),
        },
        rules,
    );
    EcgFacts {
        record_summary: summary_json(record, &analysis),
        acquired_at: record.acquired_at.map(|t| t.to_string()),
        sample_rate_hz: record.sample_rate_hz,
        samples_per_lead: record.samples_per_lead() as i64,
        leads: record
            .leads
            .iter()
            .map(|l| l.lead.label().to_string())
            .collect::<Vec<_>>()
            .join(","),
        heart_rate_bpm: analysis.measurements.heart_rate_bpm,
        alerts,
        source: record.source,
    }
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

fn measurements_json(m: &GlobalMeasurements) -> Value {
    let mut o = Map::new();
    for (k, v) in [
        ("heart_rate_bpm", m.heart_rate_bpm),
        ("rr_ms", m.rr_ms),
        ("pr_ms", m.pr_ms),
        ("qrs_ms", m.qrs_ms),
        ("qt_ms", m.qt_ms),
        ("qtc_ms", m.qtc_ms),
        ("p_axis_deg", m.p_axis_deg),
        ("qrs_axis_deg", m.qrs_axis_deg),
        ("t_axis_deg", m.t_axis_deg),
    ] {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            o.insert(k.into(), json!(round1(v)));
        }
    }
    Value::Object(o)
}

/// The stored summary: device, its measurements and statements, and the hub's own analysis.
fn summary_json(record: &EcgRecord, a: &EcgAnalysis) -> Value {
    let mut hub = measurements_json(&a.measurements);
    if let Value::Object(o) = &mut hub {
        o.insert("beats".into(), json!(a.r_peaks.len()));
        o.insert("regularity".into(), json!(a.regularity.as_str()));
        if let Some(v) = a.rr_sd_ms {
            o.insert("rr_sd_ms".into(), json!(round1(v)));
        }
        if let Some(v) = a.qtc_bazett_ms {
            o.insert("qtc_bazett_ms".into(), json!(round1(v)));
        }
        if let Some(v) = a.qtc_fridericia_ms {
            o.insert("qtc_fridericia_ms".into(), json!(round1(v)));
        }
        o.insert(
            "detection_lead".into(),
            json!(a.detection_lead.as_ref().map(|l| l.label().to_string())),
        );
        o.insert("notes".into(), json!(a.notes));
    }
    json!({
        "duration_s": round1(record.duration_secs()),
        "device": {
            "manufacturer": record.device.manufacturer,
            "model": record.device.model,
            "serial_number": record.device.serial_number,
            "software_version": record.device.software_version,
        },
        "device_measurements": measurements_json(&record.device_measurements),
        "interpretation": record.interpretation,
        "hub": hub,
    })
}

/// A UID under the 2.25 root (ITU-T X.667) derived from a hash, so the same upload always gets the
/// same UIDs and a resend is a duplicate, not a second exam.
fn derived_uid(label: &str, sha256_hex: &str) -> String {
    let d = Sha256::digest(format!("yilian-ecg:{label}:{sha256_hex}").as_bytes());
    let mut n = [0u8; 16];
    n.copy_from_slice(&d[..16]);
    // Clear the top bit: a 127-bit number keeps the UID well inside 64 characters.
    n[0] &= 0x7f;
    format!("2.25.{}", u128::from_be_bytes(n))
}

/// The result of an ECG upload.
#[derive(Clone, Debug)]
pub struct EcgUpload {
    pub format: EcgSourceFormat,
    pub stored: Stored,
    pub route: RouteOutcome,
}

/// Why an ECG upload was refused.
#[derive(Clone, Debug)]
pub enum EcgUploadError {
    /// The file is not an ECG the hub can read, with the reason.
    Unreadable(String),
    /// The instance the file became was refused by ingest.
    Refused(Failure),
}

/// A rendering request.
#[derive(Clone, Debug)]
pub struct EcgRenderRequest {
    /// One instance of the exam; the first ECG when absent.
    pub sop_instance_uid: Option<SopInstanceUid>,
    pub paper: PaperOptions,
    pub png: bool,
    pub lang: Lang,
    /// Render the patient's prior ECG under the current one.
    pub with_prior: bool,
}

/// One ECG as the reader sees it.
#[derive(Clone, Debug)]
pub struct EcgItem {
    pub row: EcgRow,
    pub site_name: Option<String>,
    /// The exam the record belongs to, when it has one.
    pub exam_id: Option<ExamId>,
}

/// What a reader opens for an ECG exam.
#[derive(Clone, Debug)]
pub struct EcgView {
    pub exam: ExamRecord,
    pub records: Vec<EcgItem>,
    pub prior: Option<EcgItem>,
}

impl Hub {
    /// An HL7 aECG or SCP-ECG file (or a DICOM ECG) uploaded by a site: parsed, filed as a DICOM ECG
    /// waveform instance through the same ingest as every other instance, the original kept as a blob,
    /// then routed at once (urgent with the site's reason, e.g. chest pain).
    pub async fn upload_ecg(
        &self,
        who: &Principal,
        bytes: Bytes,
        urgent_reason: Option<&str>,
    ) -> Result<Result<EcgUpload, EcgUploadError>, AppError> {
        require(who, Action::UploadStudy)?;
        let urgent_reason = urgent_reason.map(str::trim).filter(|r| !r.is_empty());
        let b = bytes.clone();
        let parsed = tokio::task::spawn_blocking(move || {
            let format = yilian_formats::ecg::sniff(&b);
            (format, yilian_formats::ecg::parse_upload(&b))
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("ECG parser task: {e}")))?;
        let (format, record) = match parsed {
            (Some(f), Ok(r)) => (f, r),
            (None, _) => {
                return Ok(Err(EcgUploadError::Unreadable(
                    "the file is not an HL7 aECG document, an SCP-ECG file or a DICOM file".into(),
                )));
            }
            (Some(_), Err(e)) => return Ok(Err(EcgUploadError::Unreadable(e.to_string()))),
        };
        let (dicom, source) = if format == EcgSourceFormat::DicomWaveform {
            (bytes, None)
        } else {
            let Some(patient_id) = record
                .subject
                .patient_id
                .clone()
                .filter(|p| !p.trim().is_empty())
            else {
                return Ok(Err(EcgUploadError::Unreadable(
                    "the file carries no patient ID; the hub cannot file an ECG without one".into(),
                )));
            };
            let sha = hex::encode(Sha256::digest(&bytes));
            let site = self.config.site(who.site.as_str());
            let ids = yilian_formats::ecg::EcgDicomIds {
                study_uid: derived_uid("study", &sha),
                series_uid: derived_uid("series", &sha),
                sop_uid: derived_uid("instance", &sha),
                patient_id,
                issuer_of_patient_id: site.map(|s| s.patient_id_issuer.clone()),
                accession_number: None,
                institution_name: site.map(|s| s.name.clone()),
                study_description: Some(format!("ECG ({} upload)", format.as_str())),
            };
            let dicom = match yilian_formats::ecg::to_dicom(&record, &ids) {
                Ok(d) => d,
                Err(e) => return Ok(Err(EcgUploadError::Unreadable(e.to_string()))),
            };
            let key = blob_key(&sha);
            self.blobs.put(&key, bytes).await?;
            (
                Bytes::from(dicom),
                Some(EcgSource {
                    format,
                    blob_key: key,
                    sha256: sha,
                }),
            )
        };
        let stored = match self
            .store_input(who, Input::Memory(dicom), None, source.as_ref())
            .await?
        {
            Ok(s) => s,
            Err(f) => return Ok(Err(EcgUploadError::Refused(f))),
        };
        let study = StudyInstanceUid::new(stored.study_uid.clone())
            .map_err(|e| PortError::Corrupt(e.to_string()))?;
        let route = match urgent_reason {
            Some(reason) => self.complete_study(who, &study, true, Some(reason)).await?,
            None => self.route_study(&study).await?,
        };
        Ok(Ok(EcgUpload {
            format,
            stored,
            route,
        }))
    }

    /// The alerts of a study's ECGs (empty for imaging), for the routing policy.
    pub(crate) async fn ecg_alerts_of_study(
        &self,
        study: &StudyInstanceUid,
    ) -> Result<Vec<String>, PortError> {
        let mut out: Vec<String> = Vec::new();
        for row in self.catalog.ecg_records_of_study(study).await? {
            let alerts: Vec<String> = serde_json::from_str(&row.alerts)
                .map_err(|e| PortError::Corrupt(format!("ecg_records.alerts: {e}")))?;
            for a in alerts {
                if !out.contains(&a) {
                    out.push(a);
                }
            }
        }
        Ok(out)
    }

    async fn ecg_item(&self, row: EcgRow) -> Result<EcgItem, PortError> {
        let exam_id = self
            .catalog
            .exam_of_study(&row.study_uid)
            .await?
            .map(|e| e.exam_id);
        Ok(EcgItem {
            site_name: self.config.site(row.site.as_str()).map(|s| s.name.clone()),
            exam_id,
            row,
        })
    }

    /// The patient's previous ECG (same alliance patient, any site) before the given record.
    async fn prior_of(&self, current: &EcgRow) -> Result<Option<EcgItem>, PortError> {
        let prior = self
            .catalog
            .prior_ecg(
                &current.patient_key,
                &current.study_uid,
                current.acquired_at.as_deref(),
                current.received_at,
            )
            .await?;
        match prior {
            Some(row) => Ok(Some(self.ecg_item(row).await?)),
            None => Ok(None),
        }
    }

    /// An ECG exam the caller may see: a reader's pools (or escalated to them), a tech's own site, a
    /// clinician's published results — the same scope as the exam's study. Else "not found".
    async fn ecg_exam_in_scope(
        &self,
        who: &Principal,
        exam_id: &ExamId,
    ) -> Result<ExamRecord, AppError> {
        let exam = self
            .catalog
            .exam(exam_id)
            .await?
            .filter(|e| e.kind == ExamKind::Ecg)
            .ok_or(AppError::NotFound("ECG"))?;
        self.study_in_scope(who, &exam.study_uid).await?;
        Ok(exam)
    }

    /// The ECG records of an exam with the patient's prior ECG (for readers: the prior may come from
    /// any site and need not be published, which only the reading physician needs). Audited.
    pub async fn ecg_view(&self, who: &Principal, exam_id: &ExamId) -> Result<EcgView, AppError> {
        let exam = self.ecg_exam_in_scope(who, exam_id).await?;
        let rows = self.catalog.ecg_records_of_study(&exam.study_uid).await?;
        let mut records = Vec::new();
        for r in rows {
            records.push(self.ecg_item(r).await?);
        }
        let prior = match records.first() {
            Some(first) if who.role == Role::Reader => self.prior_of(&first.row).await?,
            _ => None,
        };
        self.audit(
            who,
            "ecg.view",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            prior
                .as_ref()
                .map(|p| format!("prior {}", p.row.sop_instance_uid))
                .unwrap_or_default(),
        )
        .await?;
        Ok(EcgView {
            exam,
            records,
            prior,
        })
    }

    async fn load_record(&self, row: &EcgRow) -> Result<EcgRecord, AppError> {
        let inst = self
            .catalog
            .instance(&row.sop_instance_uid)
            .await?
            .ok_or(AppError::NotFound("ECG"))?;
        let bytes = self.blobs.get(&inst.blob_key).await?;
        tokio::task::spawn_blocking(move || yilian_formats::ecg::from_dicom_bytes(&bytes))
            .await
            .map_err(|e| PortError::Unavailable(format!("ECG parser task: {e}")))?
            .map_err(|e| PortError::Corrupt(format!("stored ECG no longer parses: {e}")).into())
    }

    /// The exam's ECG on standard paper (SVG or PNG), optionally with the prior ECG under it. Audited.
    pub async fn ecg_rendering(
        &self,
        who: &Principal,
        exam_id: &ExamId,
        req: &EcgRenderRequest,
    ) -> Result<(Vec<u8>, &'static str), AppError> {
        let exam = self.ecg_exam_in_scope(who, exam_id).await?;
        let rows = self.catalog.ecg_records_of_study(&exam.study_uid).await?;
        let current = match &req.sop_instance_uid {
            Some(sop) => rows.into_iter().find(|r| &r.sop_instance_uid == sop),
            None => rows.into_iter().next(),
        }
        .ok_or(AppError::NotFound("ECG"))?;
        let prior = if req.with_prior && who.role == Role::Reader {
            self.prior_of(&current).await?
        } else {
            None
        };
        // The PNG's embedded font is Latin-1 only: its header is English with the masked ID alone.
        let lang = if req.png { Lang::En } else { req.lang };
        let mut loaded = vec![(
            self.load_record(&current).await?,
            self.header(&exam, &current, lang, false, req.png),
        )];
        if let Some(p) = &prior {
            let record = self.load_record(&p.row).await?;
            loaded.push((record, self.header(&exam, &p.row, lang, true, req.png)));
        }
        let (paper, png) = (req.paper, req.png);
        let out = tokio::task::spawn_blocking(move || {
            let pages: Vec<EcgPage<'_>> = loaded
                .iter()
                .map(|(record, header)| EcgPage {
                    record,
                    header: header.clone(),
                })
                .collect();
            if png {
                yilian_render::ecg::render_png(&pages, &paper, lang, 5.0).map(|b| (b, "image/png"))
            } else {
                yilian_render::ecg::render_svg(&pages, &paper, lang)
                    .map(|s| (s.into_bytes(), "image/svg+xml"))
            }
        })
        .await
        .map_err(|e| PortError::Unavailable(format!("ECG render task: {e}")))?
        .map_err(|e| PortError::Corrupt(format!("ECG render: {e}")))?;
        self.audit(
            who,
            "ecg.render",
            "exam",
            exam_id.as_str(),
            Some(&exam.patient_key),
            "ok",
            match &prior {
                Some(p) => format!(
                    "{} with prior {}",
                    current.sop_instance_uid, p.row.sop_instance_uid
                ),
                None => current.sop_instance_uid.to_string(),
            },
        )
        .await?;
        Ok(out)
    }

    fn header(
        &self,
        exam: &ExamRecord,
        row: &EcgRow,
        lang: Lang,
        prior: bool,
        latin_only: bool,
    ) -> EcgHeader {
        let zh = matches!(lang, Lang::ZhCn);
        let title = match (prior, zh) {
            (false, true) => "当前心电图",
            (false, false) => "Current ECG",
            (true, true) => "既往心电图",
            (true, false) => "Prior ECG",
        };
        let name = match exam.patient_name.as_deref() {
            Some(n) if !latin_only => mask_name(n),
            _ => String::new(),
        };
        let patient = format!("{name} {}", mask_identifier(&exam.patient_id))
            .trim()
            .to_string();
        let site = match self.config.site(row.site.as_str()) {
            Some(s) if !latin_only => s.name.clone(),
            _ => row.site.to_string(),
        };
        let summary: Value = serde_json::from_str(&row.summary).unwrap_or(Value::Null);
        EcgHeader {
            title: title.into(),
            patient,
            acquired: row
                .acquired_at
                .clone()
                .unwrap_or_else(|| yilian_signing::format_time(row.received_at.0)),
            site,
            device_measurements: measurement_lines(&summary["device_measurements"], zh),
            hub_measurements: measurement_lines(&summary["hub"], zh),
        }
    }
}

/// Label/value lines for the paper header, in the reader's language.
fn measurement_lines(m: &Value, zh: bool) -> Vec<(String, String)> {
    let items: [(&str, &str, &str, &str); 8] = [
        ("heart_rate_bpm", "心率", "HR", "bpm"),
        ("pr_ms", "PR", "PR", "ms"),
        ("qrs_ms", "QRS", "QRS", "ms"),
        ("qt_ms", "QT", "QT", "ms"),
        ("qtc_ms", "QTc", "QTc", "ms"),
        ("qtc_fridericia_ms", "QTcF", "QTcF", "ms"),
        ("qrs_axis_deg", "电轴", "Axis", "°"),
        ("rr_sd_ms", "RR标准差", "RR SD", "ms"),
    ];
    items
        .iter()
        .filter_map(|(k, zh_label, en_label, unit)| {
            let v = m.get(*k)?.as_f64()?;
            Some((
                if zh { *zh_label } else { *en_label }.to_string(),
                format!("{v:.0} {unit}"),
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_uids_are_stable_distinct_and_valid() {
        let sha = "ab".repeat(32);
        let a = derived_uid("study", &sha);
        assert_eq!(a, derived_uid("study", &sha));
        assert_ne!(a, derived_uid("series", &sha));
        assert!(a.len() <= 64 && a.starts_with("2.25."), "{a}");
        assert!(StudyInstanceUid::new(a).is_ok());
    }

    #[test]
    fn header_lines_follow_the_language() {
        let m = json!({ "heart_rate_bpm": 72.4, "qrs_axis_deg": 58.0, "pr_ms": 160.0 });
        let zh = measurement_lines(&m, true);
        assert_eq!(zh[0], ("心率".to_string(), "72 bpm".to_string()));
        let en = measurement_lines(&m, false);
        assert!(
            en.contains(&("Axis".to_string(), "58 °".to_string())),
            "{en:?}"
        );
    }
}
