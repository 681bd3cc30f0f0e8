//! Typed identifiers passed between crates instead of raw strings.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{kind} is empty")]
    Empty { kind: &'static str },
    #[error("{kind} is longer than {max} characters")]
    TooLong { kind: &'static str, max: usize },
    #[error("{kind} contains a character that is not allowed: {found:?}")]
    BadChar { kind: &'static str, found: char },
    #[error(
        "{kind} is not a valid DICOM UID (digits and dots, no empty or leading-zero component)"
    )]
    BadUid { kind: &'static str },
}

/// A DICOM UID (PS3.5 §9): at most 64 characters, digits and dots, components without leading zeros.
fn check_uid(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > 64 {
        return Err(IdError::TooLong { kind, max: 64 });
    }
    for comp in s.split('.') {
        let ok = !comp.is_empty()
            && comp.bytes().all(|b| b.is_ascii_digit())
            && !(comp.len() > 1 && comp.starts_with('0'));
        if !ok {
            return Err(IdError::BadUid { kind });
        }
    }
    Ok(())
}

/// A short machine name: letters, digits, `-`, `_`, `.`; at most 64 characters.
fn check_slug(kind: &'static str, s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty { kind });
    }
    if s.len() > 64 {
        return Err(IdError::TooLong { kind, max: 64 });
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(IdError::BadChar { kind, found: c });
    }
    Ok(())
}

macro_rules! string_id {
    ($(#[$m:meta])* $name:ident, $kind:literal, $check:ident) => {
        $(#[$m])*
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                $check($kind, &s)?;
                Ok(Self(s))
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

string_id!(
    /// Study Instance UID (0020,000D).
    StudyInstanceUid, "Study Instance UID", check_uid
);
string_id!(
    /// Series Instance UID (0020,000E).
    SeriesInstanceUid, "Series Instance UID", check_uid
);
string_id!(
    /// SOP Instance UID (0008,0018).
    SopInstanceUid, "SOP Instance UID", check_uid
);
string_id!(
    /// SOP Class UID (0008,0016).
    SopClassUid, "SOP Class UID", check_uid
);
string_id!(
    /// A member site of the alliance (township centre, county hospital, member hospital).
    SiteId, "site id", check_slug
);
string_id!(
    /// A reading pool (e.g. the county radiology readers).
    PoolId, "pool id", check_slug
);
string_id!(
    /// A person's login name.
    Username, "username", check_slug
);
string_id!(
    /// An exam on a worklist (ULID).
    ExamId, "exam id", check_slug
);
string_id!(
    /// One version of a report (ULID).
    ReportId, "report id", check_slug
);
string_id!(
    /// One stored lab panel (ULID).
    LabPanelId, "lab panel id", check_slug
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uids_are_checked() {
        assert!(StudyInstanceUid::new("1.2.840.10008.5.1.4.1.1.2").is_ok());
        assert!(StudyInstanceUid::new("2.25.0").is_ok());
        assert_eq!(
            StudyInstanceUid::new(""),
            Err(IdError::Empty {
                kind: "Study Instance UID"
            })
        );
        assert!(matches!(
            StudyInstanceUid::new("1..2"),
            Err(IdError::BadUid { .. })
        ));
        assert!(matches!(
            StudyInstanceUid::new("1.02"),
            Err(IdError::BadUid { .. })
        ));
        assert!(matches!(
            StudyInstanceUid::new("1.2a"),
            Err(IdError::BadUid { .. })
        ));
        assert!(matches!(
            StudyInstanceUid::new("1.".repeat(40)),
            Err(IdError::TooLong { .. })
        ));
    }

    #[test]
    fn slugs_are_checked() {
        assert!(SiteId::new("tw-hongxing").is_ok());
        assert!(matches!(
            SiteId::new("a b"),
            Err(IdError::BadChar { found: ' ', .. })
        ));
        assert!(matches!(
            Username::new("../x"),
            Err(IdError::BadChar { found: '/', .. })
        ));
    }
}
