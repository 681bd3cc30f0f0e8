//! Caller authentication: `Authorization: Bearer <token>` resolved by the app to a directory user.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use yilian_app::{AppError, Principal};

use crate::AppState;
use crate::error::ApiError;

/// The authenticated caller. Extracting it fails with 401 for a missing or unknown token.
pub struct Caller(pub Principal);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim);
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(AppError::Unauthenticated.into());
        };
        let principal = state.hub.authenticate(token).await?;
        tracing::Span::current().record("user", principal.username.as_str());
        Ok(Caller(principal))
    }
}
