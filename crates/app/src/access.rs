//! Who may do what: the authorisation matrix as data (role × action), checked in one place. Scope
//! (own site, own pools, published only) is checked by each use case against the resource, and a
//! resource outside the caller's scope is reported as not found.

use yilian_domain::Role;

use crate::error::AppError;

pub type Principal = yilian_config::User;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Store DICOM instances for one's own site.
    UploadStudy,
    /// Say a study of one's own site is complete (optionally urgent).
    CompleteStudy,
    /// Retrieve or render instances of a study in scope.
    ViewStudy,
    /// List one's pools' worklists, open exams.
    ReadWorklist,
    /// Claim, release, draft and sign exams of one's pools.
    ReportExam,
    /// Look a patient up across the alliance.
    LookupResults,
    /// Read and verify a published report.
    ViewReport,
    /// Read published public keys.
    ListKeys,
    /// Hand a queued exam to another reader of its pool (a workflow action: no clinical data).
    ReassignExam,
    /// Read hub-wide aggregates (turnaround, SLA breaches, worklist depth, `/metrics`): counts and
    /// durations only, never patient data.
    ViewMetrics,
    /// Reload the routing rules from the configuration file.
    ManageRouting,
    /// See who is on duty in a pool, their qualifications and open work (no clinical data).
    ViewDuty,
    /// Send lab results (HL7 v2 ORU^R01, FHIR R4) for one's own site's lab.
    SendLab,
    /// Read a stored lab panel in scope (the sending site's own panels in this version).
    ViewLabPanel,
    /// Review and sign off lab panels of one's lab review pools (审核).
    ReviewLab,
    /// See and acknowledge the critical values one's site or pool was told of (危急值).
    AckCritical,
    /// Read the critical-value register of one's scope (admins: the whole alliance's, no patients).
    ViewCriticalRegister,
    /// Poll the notifications addressed to oneself or one's pools.
    ReadNotifications,
    /// Record, for one's own site, whether a published result was accepted or declined (互认决定).
    DecideRecognition,
    /// Ask before ordering whether a recognised prior result of an item exists (prior-result alert).
    CheckPriorResult,
    /// Read and export the audit trail (patient keys, never names or identifiers).
    ReadAudit,
}

/// The matrix. Anything not listed is refused.
const MATRIX: &[(Role, &[Action])] = &[
    (
        Role::SiteTech,
        &[
            Action::UploadStudy,
            Action::CompleteStudy,
            Action::ViewStudy,
            Action::ViewReport,
            Action::ListKeys,
            Action::SendLab,
            Action::ViewLabPanel,
            Action::AckCritical,
            Action::ViewCriticalRegister,
            Action::ReadNotifications,
        ],
    ),
    (
        Role::Reader,
        &[
            Action::ViewStudy,
            Action::ReadWorklist,
            Action::ReportExam,
            Action::LookupResults,
            Action::ViewReport,
            Action::ListKeys,
            Action::ViewDuty,
            Action::ReviewLab,
            Action::AckCritical,
            Action::ViewCriticalRegister,
            Action::ReadNotifications,
        ],
    ),
    (
        Role::Clinician,
        &[
            Action::ViewStudy,
            Action::LookupResults,
            Action::ViewReport,
            Action::ListKeys,
            Action::AckCritical,
            Action::ViewCriticalRegister,
            Action::ReadNotifications,
            Action::DecideRecognition,
            Action::CheckPriorResult,
        ],
    ),
    (
        Role::Admin,
        &[
            Action::ListKeys,
            Action::ReassignExam,
            Action::ViewMetrics,
            Action::ManageRouting,
            Action::ViewDuty,
            Action::ViewCriticalRegister,
        ],
    ),
    (Role::Auditor, &[Action::ReadAudit]),
];

pub fn allowed(role: Role, action: Action) -> bool {
    MATRIX
        .iter()
        .any(|(r, actions)| *r == role && actions.contains(&action))
}

/// `Ok` when the role may take the action, else a 403 naming both.
pub fn require(who: &Principal, action: Action) -> Result<(), AppError> {
    if allowed(who.role, action) {
        Ok(())
    } else {
        Err(AppError::Forbidden(format!(
            "role {} may not {action:?}",
            who.role.as_str()
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_matrix_matches_the_roles_jobs() {
        assert!(allowed(Role::SiteTech, Action::UploadStudy));
        assert!(!allowed(Role::SiteTech, Action::ReportExam));
        assert!(!allowed(Role::SiteTech, Action::LookupResults));
        assert!(allowed(Role::Reader, Action::ReportExam));
        assert!(!allowed(Role::Reader, Action::UploadStudy));
        assert!(allowed(Role::Clinician, Action::LookupResults));
        assert!(!allowed(Role::Clinician, Action::ReportExam));
        assert!(!allowed(Role::Clinician, Action::UploadStudy));
        // Aggregates are the admin's view of the service; the clinical roles do not get them.
        assert!(allowed(Role::Admin, Action::ViewMetrics));
        for r in [Role::SiteTech, Role::Reader, Role::Clinician] {
            assert!(!allowed(r, Action::ViewMetrics), "{r:?}");
        }
        assert!(allowed(Role::Admin, Action::ManageRouting));
        for role in [Role::SiteTech, Role::Reader, Role::Clinician] {
            assert!(!allowed(role, Action::ManageRouting), "{role:?}");
        }
        // Admins manage configuration; clinical data only through break-glass (not in this version).
        for a in [
            Action::ViewStudy,
            Action::LookupResults,
            Action::ViewReport,
            Action::ReportExam,
            Action::UploadStudy,
            Action::SendLab,
            Action::ViewLabPanel,
        ] {
            assert!(!allowed(Role::Admin, a), "{a:?}");
        }
        // Lab results come from a site's own lab; readers and clinicians neither send nor (yet) read
        // raw panels.
        assert!(allowed(Role::SiteTech, Action::SendLab));
        assert!(allowed(Role::SiteTech, Action::ViewLabPanel));
        for r in [Role::Reader, Role::Clinician] {
            assert!(!allowed(r, Action::SendLab), "{r:?}");
        }
        // Lab physicians (readers of a lab review pool) sign panels off; nobody else does.
        assert!(allowed(Role::Reader, Action::ReviewLab));
        for r in [Role::SiteTech, Role::Clinician, Role::Admin] {
            assert!(!allowed(r, Action::ReviewLab), "{r:?}");
        }
        // Critical values: the people told acknowledge; the admin keeps the register, no more.
        for r in [Role::SiteTech, Role::Clinician, Role::Reader] {
            assert!(allowed(r, Action::AckCritical), "{r:?}");
        }
        assert!(!allowed(Role::Admin, Action::AckCritical));
        assert!(allowed(Role::Admin, Action::ViewCriticalRegister));
        // Recognition decisions and the prior alert belong to the treating clinician.
        for a in [Action::DecideRecognition, Action::CheckPriorResult] {
            assert!(allowed(Role::Clinician, a), "{a:?}");
            for r in [Role::SiteTech, Role::Reader, Role::Admin] {
                assert!(!allowed(r, a), "{r:?} {a:?}");
            }
        }
    }
}
