//! Caller authentication: `Authorization: Bearer <token>` resolved by the app to a directory user.

use std::marker::PhantomData;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use yilian_app::access::require;
use yilian_app::{Action, AppError, Principal};

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

/// An action of the authorisation matrix as a type, for [`Authorized`].
pub trait Act {
    const ACTION: Action;
}

/// The authenticated caller, already checked against the matrix for `A::ACTION`: 401 without a valid
/// token, 403 when the role may not take the action. As a parts extractor it runs before any body or
/// query is read, so a refused role is told 403 and nothing else about the request.
pub struct Authorized<A>(pub Principal, pub PhantomData<A>);

impl<A: Act + Send + Sync> FromRequestParts<AppState> for Authorized<A> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(who) = Caller::from_request_parts(parts, state).await?;
        require(&who, A::ACTION)?;
        Ok(Authorized(who, PhantomData))
    }
}

macro_rules! acts {
    ($($name:ident),* $(,)?) => {
        /// Marker types naming the matrix's actions for [`Authorized`].
        pub mod act {
            use super::{Act, Action};
            $(
                #[derive(Debug)]
                pub struct $name;
                impl Act for $name {
                    const ACTION: Action = Action::$name;
                }
            )*
        }
    };
}

acts!(
    ReassignExam,
    ReportExam,
    LookupResults,
    AckCritical,
    ViewStudy,
    DecideRecognition,
    CheckPriorResult,
    ViewMetrics,
    ReadAudit,
    ViewReport,
);
