//! API bearer tokens: random, shown once, stored as SHA-256. A token resolves to a directory user.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::access::Principal;
use crate::error::AppError;
use crate::hub::Hub;
use crate::ports::PortError;

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

impl Hub {
    /// Makes a token for a directory user; returns the token text (shown once, never stored).
    pub async fn issue_token(&self, username: &str, label: &str) -> Result<String, AppError> {
        let user = self
            .config
            .user(username)
            .ok_or(AppError::NotFound("user"))?;
        let mut raw = [0u8; 32];
        getrandom::fill(&mut raw).map_err(|e| PortError::Unavailable(format!("random: {e}")))?;
        let token = format!("yl_{}", URL_SAFE_NO_PAD.encode(raw));
        let now = self.now();
        self.catalog
            .insert_token(
                &token_hash(&token),
                &user.username,
                label,
                now,
                now.plus_days(self.config.alliance.token_ttl_days),
            )
            .await?;
        Ok(token)
    }

    /// The user behind a bearer token; unknown, expired or revoked tokens are `Unauthenticated`.
    pub async fn authenticate(&self, token: &str) -> Result<Principal, AppError> {
        if !token.starts_with("yl_") || token.len() > 128 {
            return Err(AppError::Unauthenticated);
        }
        let owner = self
            .catalog
            .token_owner(&token_hash(token), self.now())
            .await?
            .ok_or(AppError::Unauthenticated)?;
        self.config
            .user(owner.as_str())
            .ok_or(AppError::Unauthenticated)
    }
}
