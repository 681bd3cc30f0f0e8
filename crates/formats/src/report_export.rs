//! The one typed view of a signed imaging or ECG report that every export reads: the FHIR
//! `DiagnosticReport` + `ImagingStudy` (`report_fhir`) and the DICOM Basic Text SR (`report_sr`).
//! `app` gathers it from the signed document, the catalog and the recognition decision; the exporters
//! only spell it.

use yilian_domain::UnixMillis;

use crate::fhir_lab::out::Recognition;

/// One stored instance a report covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportInstance {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub instance_number: Option<i64>,
}

/// One series of the study with its instances.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSeries {
    pub series_uid: String,
    pub modality: Option<String>,
    pub series_number: Option<i64>,
    pub description: Option<String>,
    pub body_part: Option<String>,
    pub instances: Vec<ExportInstance>,
}

/// Who signed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSigner {
    pub username: String,
    pub name: String,
    pub key_id: String,
}

/// A signed imaging or ECG report as the exports show it.
#[derive(Clone, Debug)]
pub struct ReportExport {
    /// The report's ULID: the DiagnosticReport id.
    pub report_id: String,
    pub version: i64,
    /// FHIR `DiagnosticReport.status`: `final`, `amended` (a later signed version) or
    /// `entered-in-error` (revoked, 作废).
    pub status: String,
    /// `imaging` or `ecg`.
    pub kind: String,
    pub modality: String,
    pub study_uid: String,
    pub accession_number: Option<String>,
    /// `YYYYMMDD` as the study says.
    pub study_date: Option<String>,
    pub study_description: Option<String>,
    pub alliance_name: String,
    pub site_id: String,
    pub site_name: String,
    /// The FHIR Patient id (first hex digits of the alliance key).
    pub patient_fhir_id: String,
    /// The study's PatientID and its issuer, as the images carry them (for the SR only, so a PACS files
    /// it with them; the FHIR resources and printouts never show them).
    pub patient_id: String,
    pub issuer_of_patient_id: String,
    /// DICOM PN as stored (`Family^Given` or whole).
    pub patient_name: Option<String>,
    pub findings: String,
    pub impression: String,
    pub signer: ExportSigner,
    pub signed_at: UnixMillis,
    /// The alliance's offset from UTC in minutes (DICOM dates and times are local).
    pub utc_offset_minutes: i16,
    /// The series in the study (those the report's results reference first, by series number).
    pub series: Vec<ExportSeries>,
    pub recognition: Recognition,
    /// Where a person verifies the report (the QR code's target).
    pub verify_url: String,
    /// The hub's DICOMweb base (`…/dicomweb`): the ImagingStudy endpoint.
    pub dicomweb_url: String,
    /// The printable report (PDF) of this report, for `presentedForm`.
    pub pdf_url: String,
}

impl ReportExport {
    /// How many instances the study holds.
    pub fn instance_count(&self) -> usize {
        self.series.iter().map(|s| s.instances.len()).sum()
    }

    pub fn is_ecg(&self) -> bool {
        self.kind == "ecg"
    }
}
