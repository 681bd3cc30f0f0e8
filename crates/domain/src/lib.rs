//! Yilian's domain core: typed identifiers, roles, exam and report states, resident-ID validation, and
//! the ECG trace model and the lab panel model.
//! It does no I/O and knows nothing of async, JSON, SQL or HTTP.

pub mod ecg;
pub mod exam;
pub mod ids;
pub mod lab;
pub mod patient;
pub mod time;

pub use exam::{ExamKind, ExamState, Priority, ReportStatus};
pub use ids::{
    ExamId, IdError, LabPanelId, PoolId, ReportId, SeriesInstanceUid, SiteId, SopClassUid,
    SopInstanceUid, StudyInstanceUid, Username,
};
pub use patient::{LocalPatientId, PatientKey, ResidentId, mask_identifier, mask_name};
pub use time::UnixMillis;

/// What a person does at the hub. The authorisation matrix in `yilian-app` is keyed by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// 基层技师: uploads studies for their own site and watches them until the report is back.
    SiteTech,
    /// 上级医院阅片医师: reads exams on the worklists of their pools and signs reports.
    Reader,
    /// 成员医院临床医师: looks up published results of a patient.
    Clinician,
    /// 医联体管理员: manages configuration; reads no clinical data in this version.
    Admin,
    /// 审计员: reads and exports the audit trail (who looked at what), nothing clinical.
    Auditor,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::SiteTech => "site_tech",
            Role::Reader => "reader",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "site_tech" => Role::SiteTech,
            "reader" => Role::Reader,
            "clinician" => Role::Clinician,
            "admin" => Role::Admin,
            "auditor" => Role::Auditor,
            _ => return None,
        })
    }
}
