//! The errors use cases return. The HTTP layer maps them to status codes in one place.

use crate::ports::PortError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("authentication required")]
    Unauthenticated,
    /// The caller's role may not do this at all (403).
    #[error("{0}")]
    Forbidden(String),
    /// Unknown, or not visible to this caller: the two look the same (404).
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{message}")]
    Conflict { code: &'static str, message: String },
    #[error("{0}")]
    Invalid(String),
    /// The signer's key refused to sign: none, not sealed as required, expired, passphrase missing
    /// or wrong (403 with the code). No signature was made.
    #[error("{message}")]
    KeyRefused { code: &'static str, message: String },
    /// Something the hub needs for this request is not installed or configured (503 with `code`).
    #[error("{message}")]
    Unavailable { code: &'static str, message: String },
    #[error(transparent)]
    Port(#[from] PortError),
}

impl From<crate::ports::VaultError> for AppError {
    fn from(e: crate::ports::VaultError) -> Self {
        use crate::ports::VaultError;
        match e {
            VaultError::Port(p) => AppError::Port(p),
            VaultError::PassphraseRequired => AppError::KeyRefused {
                code: "passphrase_required",
                message: e.to_string(),
            },
            VaultError::WrongPassphrase => AppError::KeyRefused {
                code: "wrong_passphrase",
                message: e.to_string(),
            },
        }
    }
}

impl AppError {
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        AppError::Conflict {
            code,
            message: message.into(),
        }
    }
}
