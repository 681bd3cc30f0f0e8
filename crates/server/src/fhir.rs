//! The FHIR R4 read API for lab results, under `/fhir/r4`: `GET metadata`, searches
//! (`GET {Patient|DiagnosticReport|Observation}?…`) and reads (`GET {type}/{id}`), answered as
//! `application/fhir+json`. Every error, 401 included, is an `OperationOutcome`; its status and message
//! come from the one mapping in `error.rs`. The use cases are in `yilian_app::lab_fhir`.

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{FromRequestParts, OriginalUri, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::Value;
use yilian_app::{AppError, Principal};
use yilian_formats::fhir_lab::out::{FHIR_JSON, operation_outcome};
use yilian_formats::fhir_lab::search::SearchResource;

use crate::AppState;
use crate::auth::Caller;
use crate::error::ApiError;

/// An error of the FHIR API: the status and message `ApiError` decides, as an OperationOutcome.
pub struct FhirError(ApiError);

impl From<ApiError> for FhirError {
    fn from(e: ApiError) -> Self {
        FhirError(e)
    }
}

impl From<AppError> for FhirError {
    fn from(e: AppError) -> Self {
        FhirError(e.into())
    }
}

impl FhirError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        FhirError(ApiError::new(status, "fhir", message))
    }
}

/// The OperationOutcome issue type of an HTTP status.
fn issue_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::UNAUTHORIZED => "login",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not-found",
        StatusCode::BAD_REQUEST => "invalid",
        StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_ACCEPTABLE => "not-supported",
        StatusCode::SERVICE_UNAVAILABLE => "transient",
        _ => "exception",
    }
}

fn fhir_json(status: StatusCode, body: &Value) -> Response {
    let mut resp = (status, serde_json::to_vec(body).unwrap_or_default()).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    resp
}

impl IntoResponse for FhirError {
    fn into_response(self) -> Response {
        let e = self.0;
        let mut resp = fhir_json(
            e.status,
            &operation_outcome("error", issue_code(e.status), &e.message),
        );
        if e.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

/// The authenticated caller, or a 401 OperationOutcome.
pub struct FhirCaller(pub Principal);

impl FromRequestParts<AppState> for FhirCaller {
    type Rejection = FhirError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let Caller(who) = Caller::from_request_parts(parts, state).await?;
        Ok(FhirCaller(who))
    }
}

/// The routes, to be nested at `/fhir/r4`.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/metadata", get(metadata).fallback(method_not_allowed))
        .route("/{resource}", get(search).fallback(method_not_allowed))
        .route("/{resource}/{id}", get(read).fallback(method_not_allowed))
        .fallback(not_found)
}

fn resource_type(name: &str) -> Result<SearchResource, FhirError> {
    SearchResource::parse(name).ok_or_else(|| {
        FhirError::new(
            StatusCode::NOT_FOUND,
            format!(
                "resource type {name:?} is not served here: Patient, DiagnosticReport, Observation, ImagingStudy (see metadata)"
            ),
        )
    })
}

async fn not_found(FhirCaller(_): FhirCaller) -> FhirError {
    FhirError::new(
        StatusCode::NOT_FOUND,
        "no such FHIR endpoint; see /fhir/r4/metadata",
    )
}

async fn method_not_allowed(FhirCaller(_): FhirCaller) -> FhirError {
    FhirError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "this FHIR API is read-only: GET only",
    )
}

/// `GET /fhir/r4/metadata`.
async fn metadata(State(st): State<AppState>, FhirCaller(who): FhirCaller) -> Response {
    fhir_json(StatusCode::OK, &st.hub.fhir_capability(&who))
}

/// `GET /fhir/r4/{type}?…`.
async fn search(
    State(st): State<AppState>,
    FhirCaller(who): FhirCaller,
    Path(name): Path<String>,
    OriginalUri(uri): OriginalUri,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<Response, FhirError> {
    let resource = resource_type(&name)?;
    let Query(params) = query.map_err(|e| {
        FhirError::new(
            StatusCode::BAD_REQUEST,
            format!("unreadable query string: {e}"),
        )
    })?;
    let path = uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| uri.path().to_string());
    let self_url = match &st.hub.config.server.public_url {
        Some(base) => format!("{}{path}", base.trim_end_matches('/')),
        None => path,
    };
    let bundle = st
        .hub
        .fhir_lab_search(&who, resource, &params, &self_url)
        .await?;
    Ok(fhir_json(StatusCode::OK, &bundle))
}

/// `GET /fhir/r4/{type}/{id}`.
async fn read(
    State(st): State<AppState>,
    FhirCaller(who): FhirCaller,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    let resource = resource_type(&name)?;
    let value = st.hub.fhir_lab_read(&who, resource, &id).await?;
    Ok(fhir_json(StatusCode::OK, &value))
}
