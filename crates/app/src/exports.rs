//! Report exports: a signed imaging or ECG report as FHIR R4 (`DiagnosticReport` + `ImagingStudy`, in
//! the `/fhir/r4` read API beside lab), as a DICOM Basic Text SR, and as a printable report (HTML and
//! PDF with a QR code to the verification link). This module gathers one typed
//! [`ReportExport`] from the stored signed document (findings, impression and signer are read from it,
//! extra fields tolerated), the catalog (study, series, instances) and the recognition decision; the
//! exporters in `formats` and `render` only spell it. Every export is audited (`report.export` with the
//! format; FHIR as `lab.fhir.*` like lab results, from `lab_fhir`).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use chrono::{DateTime, FixedOffset};
use serde_json::Value;
use yilian_domain::{PatientKey, ReportId, ReportStatus, StudyInstanceUid, UnixMillis, mask_name};
use yilian_formats::fhir_lab::out::{self, Recognition};
use yilian_formats::report_export::{ExportInstance, ExportSeries, ExportSigner, ReportExport};
use yilian_formats::{report_fhir, report_sr};
use yilian_render::report::{PrintRecognition, PrintableReport};

use crate::access::Principal;
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::{ExamRecord, PortError, ReportRecord};

/// Where Debian's CJK font packages put their fonts, in the order tried when `[reports] pdf_font` is
/// unset: fonts-wqy-microhei, fonts-wqy-zenhei, fonts-noto-cjk.
pub const STANDARD_PDF_FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/wqy/wqy-microhei.ttc",
    "/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
];

/// The export formats, as the audit names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExportFormat {
    DicomSr,
    Html,
    Pdf,
}

impl ExportFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::DicomSr => "dicom-sr",
            ExportFormat::Html => "html",
            ExportFormat::Pdf => "pdf",
        }
    }
}

/// Fonts read once per path for the life of the process (several MB each).
fn font_cache() -> &'static Mutex<HashMap<PathBuf, Arc<Vec<u8>>>> {
    static FONTS: OnceLock<Mutex<HashMap<PathBuf, Arc<Vec<u8>>>>> = OnceLock::new();
    FONTS.get_or_init(Default::default)
}

fn recognition_of(d: &yilian_policy::RecognitionDecision) -> Recognition {
    Recognition {
        recognised: d.recognised,
        scope: d.scope.clone(),
        valid_until: d.valid_until,
        eqa: None,
        reasons: d.reasons.clone(),
    }
}

fn text_of(doc: Option<&Value>, key: &str, fallback: &str) -> String {
    doc.and_then(|d| d.get(key))
        .and_then(Value::as_str)
        .unwrap_or(fallback)
        .to_string()
}

impl Hub {
    fn local_time(&self, t: UnixMillis) -> String {
        let minutes = self.config.alliance.utc_offset_minutes;
        let utc = DateTime::from_timestamp_millis(t.0).unwrap_or_default();
        match FixedOffset::east_opt(minutes.saturating_mul(60)) {
            Some(offset) => format!(
                "{} (UTC{offset})",
                utc.with_timezone(&offset).format("%Y-%m-%d %H:%M:%S")
            ),
            None => format!("{} (UTC)", utc.format("%Y-%m-%d %H:%M:%S")),
        }
    }

    /// The export view of a final report: the signed document's text and signer, the study's series
    /// and instances, recognition at `now`.
    pub(crate) async fn report_export(
        &self,
        report: ReportRecord,
        exam: ExamRecord,
    ) -> Result<ReportExport, AppError> {
        let doc: Option<Value> = report
            .document
            .as_deref()
            .and_then(|d| serde_json::from_str(d).ok());
        let study = self
            .catalog
            .study(&exam.study_uid)
            .await?
            .ok_or_else(|| PortError::Corrupt(format!("exam {} has no study", exam.exam_id)))?;
        let series = self.catalog.study_series(&exam.study_uid).await?;
        let instances = self.catalog.study_instances(&exam.study_uid).await?;
        let mut by_series: BTreeMap<String, Vec<ExportInstance>> = BTreeMap::new();
        for i in &instances {
            by_series
                .entry(i.series_uid.as_str().to_string())
                .or_default()
                .push(ExportInstance {
                    sop_instance_uid: i.sop_instance_uid.as_str().to_string(),
                    sop_class_uid: i.sop_class_uid.as_str().to_string(),
                    instance_number: i.instance_number,
                });
        }
        let mut export_series: Vec<ExportSeries> = series
            .iter()
            .map(|s| {
                let mut inst = by_series.remove(s.series_uid.as_str()).unwrap_or_default();
                inst.sort_by_key(|i| (i.instance_number, i.sop_instance_uid.clone()));
                ExportSeries {
                    series_uid: s.series_uid.as_str().to_string(),
                    modality: s.modality.clone(),
                    series_number: s.series_number,
                    description: s.description.clone(),
                    body_part: s.body_part.clone(),
                    instances: inst,
                }
            })
            .collect();
        export_series.sort_by_key(|s| (s.series_number, s.series_uid.clone()));
        let keys = self.catalog.public_keys().await?;
        let view = self
            .result_view(exam.clone(), report.clone(), &keys, self.now())
            .await?;
        let signer = doc.as_ref().and_then(|d| d.get("signer"));
        let signer_field = |k: &str, fallback: &str| {
            signer
                .and_then(|s| s.get(k))
                .and_then(Value::as_str)
                .unwrap_or(fallback)
                .to_string()
        };
        let base = self.config.public_url();
        let id = report.report_id.as_str();
        Ok(ReportExport {
            report_id: id.to_string(),
            version: report.version,
            status: match view.lifecycle.status() {
                "revoked" => "entered-in-error",
                "amended" => "amended",
                _ => "final",
            }
            .into(),
            kind: exam.kind.as_str().to_string(),
            modality: exam.modality.clone(),
            study_uid: exam.study_uid.as_str().to_string(),
            accession_number: study.accession_number.clone(),
            study_date: study.study_date.clone(),
            study_description: study.study_description.clone(),
            alliance_name: self.config.alliance.name.clone(),
            site_id: exam.site.as_str().to_string(),
            site_name: view.site_name.clone(),
            patient_fhir_id: out::patient_id(&exam.patient_key.0),
            patient_id: study.patient_id.clone(),
            issuer_of_patient_id: study.issuer_of_patient_id.clone(),
            patient_name: study.patient_name.clone(),
            findings: text_of(doc.as_ref(), "findings", &report.findings),
            impression: text_of(doc.as_ref(), "impression", &report.impression),
            signer: ExportSigner {
                username: signer_field("username", report.author.as_str()),
                name: signer_field("name", report.author.as_str()),
                key_id: signer_field("key_id", report.key_id.as_deref().unwrap_or("")),
            },
            signed_at: report.signed_at.unwrap_or(report.updated_at),
            utc_offset_minutes: i16::try_from(self.config.alliance.utc_offset_minutes)
                .unwrap_or(480),
            series: export_series,
            recognition: recognition_of(&view.recognition),
            verify_url: format!("{base}/verify/{id}"),
            dicomweb_url: format!("{base}/dicomweb"),
            pdf_url: format!("{base}/api/v1/reports/{id}/pdf"),
        })
    }

    /// A final report in the caller's scope (as `GET /api/v1/reports/{id}`), as its export view,
    /// audited `report.export` with the format.
    async fn export_in_scope(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<(ReportExport, PatientKey), AppError> {
        let (report, exam) = self.report_in_scope(who, report_id).await?;
        let key = exam.patient_key.clone();
        let export = self.report_export(report, exam).await?;
        Ok((export, key))
    }

    async fn audit_export(
        &self,
        who: &Principal,
        report_id: &ReportId,
        key: &PatientKey,
        format: ExportFormat,
    ) -> Result<(), AppError> {
        self.audit(
            who,
            "report.export",
            "report",
            report_id.as_str(),
            Some(key),
            "ok",
            format!("format={}", format.as_str()),
        )
        .await?;
        Ok(())
    }

    /// The report as a DICOM Basic Text SR (Part 10 bytes).
    pub async fn report_sr(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<Vec<u8>, AppError> {
        let (export, key) = self.export_in_scope(who, report_id).await?;
        let bytes = report_sr::basic_text_sr(&export)
            .map_err(|e| PortError::Corrupt(format!("report {report_id}: {e}")))?;
        self.audit_export(who, report_id, &key, ExportFormat::DicomSr)
            .await?;
        Ok(bytes)
    }

    fn printable(&self, e: &ReportExport) -> PrintableReport {
        PrintableReport {
            alliance_name: e.alliance_name.clone(),
            site_name: e.site_name.clone(),
            title: if e.is_ecg() {
                "心电图诊断报告".into()
            } else {
                "医学影像诊断报告".into()
            },
            report_id: e.report_id.clone(),
            version: e.version,
            patient_name_masked: e
                .patient_name
                .as_deref()
                .map(mask_name)
                .filter(|n| !n.is_empty()),
            modality: e.modality.clone(),
            study_description: e.study_description.clone(),
            study_date: e
                .study_date
                .as_deref()
                .filter(|d| d.len() == 8 && d.bytes().all(|b| b.is_ascii_digit()))
                .map(|d| format!("{}-{}-{}", &d[..4], &d[4..6], &d[6..])),
            accession_number: e.accession_number.clone(),
            findings: e.findings.clone(),
            impression: e.impression.clone(),
            signer_name: e.signer.name.clone(),
            signer_username: e.signer.username.clone(),
            signed_at: self.local_time(e.signed_at),
            key_id: e.signer.key_id.clone(),
            recognition: PrintRecognition {
                recognised: e.recognition.recognised,
                mark: e
                    .recognition
                    .recognised
                    .then(|| out::RECOGNISED_CODE.to_string()),
                scope: e.recognition.scope.clone(),
                valid_until: e.recognition.valid_until.map(|t| self.local_time(t)),
                reasons: e.recognition.reasons.clone(),
            },
            verify_url: e.verify_url.clone(),
        }
    }

    /// The printable report as an HTML page (zh-CN).
    pub async fn report_print_html(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<String, AppError> {
        let (export, key) = self.export_in_scope(who, report_id).await?;
        let page = yilian_render::report::html(&self.printable(&export))
            .map_err(|e| PortError::Corrupt(format!("report {report_id}: {e}")))?;
        self.audit_export(who, report_id, &key, ExportFormat::Html)
            .await?;
        Ok(page)
    }

    /// The font file for PDFs: `[reports] pdf_font`, else the first standard path that exists.
    fn pdf_font_path(&self) -> Option<PathBuf> {
        match &self.config.reports.pdf_font {
            Some(p) => Some(p.clone()),
            None => STANDARD_PDF_FONTS
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
        }
    }

    async fn pdf_font(&self) -> Result<Arc<Vec<u8>>, AppError> {
        let missing = |detail: String| AppError::Unavailable {
            code: "pdf_font_missing",
            message: format!(
                "no CJK font for PDF reports: {detail}; install fonts-wqy-microhei or set [reports] pdf_font"
            ),
        };
        let path = self
            .pdf_font_path()
            .ok_or_else(|| missing(format!("none of {}", STANDARD_PDF_FONTS.join(", "))))?;
        if let Some(f) = font_cache().lock().ok().and_then(|m| m.get(&path).cloned()) {
            return Ok(f);
        }
        let bytes = tokio::fs::read(&path)
            .await
            .map_err(|e| missing(format!("{}: {e}", display(&path))))?;
        let font = Arc::new(bytes);
        if let Ok(mut m) = font_cache().lock() {
            m.insert(path, font.clone());
        }
        Ok(font)
    }

    /// The printable report as a PDF (A4, the CJK font subset and embedded, a QR code to the
    /// verification link). 503 `pdf_font_missing` without a usable font.
    pub async fn report_pdf(
        &self,
        who: &Principal,
        report_id: &ReportId,
    ) -> Result<Vec<u8>, AppError> {
        let (export, key) = self.export_in_scope(who, report_id).await?;
        let font = self.pdf_font().await?;
        let printable = self.printable(&export);
        let pdf =
            tokio::task::spawn_blocking(move || yilian_render::report::pdf(&printable, &font, 0))
                .await
                .map_err(|e| PortError::Unavailable(format!("PDF task: {e}")))?
                .map_err(|e| match e {
                    yilian_render::report::PrintError::Font(m) => AppError::Unavailable {
                        code: "pdf_font_missing",
                        message: format!("the configured PDF font cannot be used: {m}"),
                    },
                    other => PortError::Corrupt(format!("report {report_id}: {other}")).into(),
                })?;
        self.audit_export(who, report_id, &key, ExportFormat::Pdf)
            .await?;
        Ok(pdf)
    }

    // --- FHIR (called from `lab_fhir`, which checks the role and audits) ---

    /// A final report as a FHIR DiagnosticReport, with its patient; `None` when unknown.
    pub(crate) async fn fhir_imaging_report(
        &self,
        id: &str,
    ) -> Result<Option<(ReportExport, PatientKey)>, AppError> {
        let Ok(report_id) = ReportId::new(id) else {
            return Ok(None);
        };
        let Some(report) = self
            .catalog
            .report(&report_id)
            .await?
            .filter(|r| r.status == ReportStatus::Final)
        else {
            return Ok(None);
        };
        let Some(exam) = self.catalog.exam(&report.exam_id).await? else {
            return Ok(None);
        };
        let key = exam.patient_key.clone();
        Ok(Some((self.report_export(report, exam).await?, key)))
    }

    /// The newest final report of a study, for its ImagingStudy; `None` when unknown or unreported.
    pub(crate) async fn fhir_imaging_study(
        &self,
        id: &str,
    ) -> Result<Option<(ReportExport, PatientKey)>, AppError> {
        if !report_fhir::is_imaging_study_id(id) {
            return Ok(None);
        }
        let Ok(uid) = StudyInstanceUid::new(id) else {
            return Ok(None);
        };
        let Some(exam) = self.catalog.exam_of_study(&uid).await? else {
            return Ok(None);
        };
        let Some(report) = self.catalog.final_report_of(&exam.exam_id).await? else {
            return Ok(None);
        };
        let key = exam.patient_key.clone();
        Ok(Some((self.report_export(report, exam).await?, key)))
    }

    /// The patients' final imaging and ECG reports (the newest version of each exam), newest first.
    pub(crate) async fn fhir_imaging_reports_of(
        &self,
        keys: &[PatientKey],
    ) -> Result<Vec<(ReportExport, PatientKey)>, AppError> {
        let mut out_list = Vec::new();
        for key in keys {
            let mut seen = std::collections::BTreeSet::new();
            for (exam, report) in self.catalog.results_of_patient(key).await? {
                if seen.insert(exam.exam_id.as_str().to_string()) {
                    out_list.push((self.report_export(report, exam).await?, key.clone()));
                }
            }
        }
        Ok(out_list)
    }
}

fn display(p: &Path) -> String {
    p.display().to_string()
}
