//! Exams and reports: kinds, priorities and the states they move through.

/// What kind of examination an exam is (检查): imaging, or an ECG (modality `ECG`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExamKind {
    Imaging,
    Ecg,
}

impl ExamKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ExamKind::Imaging => "imaging",
            ExamKind::Ecg => "ecg",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "imaging" => ExamKind::Imaging,
            "ecg" => ExamKind::Ecg,
            _ => return None,
        })
    }
    /// The kind of an exam from its modality.
    pub fn of_modality(modality: &str) -> Self {
        if modality.eq_ignore_ascii_case("ECG") {
            ExamKind::Ecg
        } else {
            ExamKind::Imaging
        }
    }
}

/// Reading priority. Lower rank is read first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    Stat,
    Urgent,
    Routine,
}

impl Priority {
    pub fn rank(self) -> i64 {
        match self {
            Priority::Stat => 0,
            Priority::Urgent => 1,
            Priority::Routine => 2,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Stat => "stat",
            Priority::Urgent => "urgent",
            Priority::Routine => "routine",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "stat" => Priority::Stat,
            "urgent" => Priority::Urgent,
            "routine" => Priority::Routine,
            _ => return None,
        })
    }
    /// One step more urgent (used when the uploader marks an exam urgent).
    pub fn raised(self) -> Self {
        match self {
            Priority::Routine => Priority::Urgent,
            _ => Priority::Stat,
        }
    }
}

/// Where an exam stands on the worklist. A claim is a lease on a `Queued` exam, not a state of its own:
/// when the lease lapses the exam is simply claimable again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExamState {
    Queued,
    Signed,
}

impl ExamState {
    pub fn as_str(self) -> &'static str {
        match self {
            ExamState::Queued => "queued",
            ExamState::Signed => "signed",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "queued" => ExamState::Queued,
            "signed" => ExamState::Signed,
            _ => return None,
        })
    }
}

/// A report version's status. A `Final` report never changes again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportStatus {
    Draft,
    Final,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Draft => "draft",
            ReportStatus::Final => "final",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "draft" => ReportStatus::Draft,
            "final" => ReportStatus::Final,
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn priorities_order_and_raise() {
        assert!(Priority::Stat.rank() < Priority::Urgent.rank());
        assert!(Priority::Urgent.rank() < Priority::Routine.rank());
        assert_eq!(Priority::Routine.raised(), Priority::Urgent);
        assert_eq!(Priority::Urgent.raised(), Priority::Stat);
        for p in [Priority::Stat, Priority::Urgent, Priority::Routine] {
            assert_eq!(Priority::parse(p.as_str()), Some(p));
        }
    }
}
