//! Yilian server: the HTTP front end (DICOMweb, the REST API, the FHIR R4 lab read API, health), the
//! DIMSE listener (`dimse`), authentication of callers, and the background jobs. Handlers translate
//! HTTP and DIMSE to `yilian-app` use cases and back; no SQL here.

mod api;
mod audit;
mod auth;
mod dicomweb;
pub mod dimse;
mod ecg;
mod error;
mod exports;
mod fhir;
mod lab;
mod lab_review;
mod limits;
mod metrics;
pub mod mllp;
pub mod openapi;
mod recognition;
mod wado;

use std::time::Duration;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::set_header::SetResponseHeaderLayer;
use tower_http::trace::TraceLayer;
use yilian_app::Hub;

pub use dimse::{serve_dimse, spawn_dimse};
pub use error::ApiError;
pub use mllp::{MllpServer, spawn_mllp};

/// Shared handler state.
#[derive(Clone)]
pub struct AppState {
    pub hub: Hub,
    /// Per-client limits and failed-authentication lockouts (`[server.limits]`).
    limiter: std::sync::Arc<limits::Limiter>,
}

/// Limit for JSON API bodies; DICOMweb STOW uses `server.max_body_bytes` instead.
const API_BODY_LIMIT: usize = 1024 * 1024;

/// Every route the hub serves.
pub fn router(hub: Hub) -> Router {
    let state = AppState {
        hub,
        limiter: Default::default(),
    };
    let dicomweb = Router::new()
        .route(
            "/dicomweb/studies",
            post(dicomweb::stow).get(wado::search_studies),
        )
        .route(
            "/dicomweb/studies/{study}",
            post(dicomweb::stow_to_study).get(wado::retrieve_study),
        )
        .route("/dicomweb/series", get(wado::search_all_series))
        .route("/dicomweb/instances", get(wado::search_all_instances))
        .route(
            "/dicomweb/studies/{study}/series",
            get(wado::search_study_series),
        )
        .route(
            "/dicomweb/studies/{study}/instances",
            get(wado::search_study_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances",
            get(wado::search_series_instances),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}",
            get(wado::retrieve_series),
        )
        .route(
            "/dicomweb/studies/{study}/metadata",
            get(wado::metadata_study),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/metadata",
            get(wado::metadata_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}",
            get(wado::retrieve_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/metadata",
            get(wado::metadata_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/bulkdata/{*path}",
            get(wado::bulkdata),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frame}",
            get(wado::frames),
        )
        .route("/wado", get(wado::wado_uri))
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/rendered",
            get(dicomweb::rendered),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/rendered",
            get(dicomweb::rendered_frame),
        )
        .route(
            "/dicomweb/studies/{study}/thumbnail",
            get(dicomweb::thumbnail_study),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/thumbnail",
            get(dicomweb::thumbnail_series),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/thumbnail",
            get(dicomweb::thumbnail_instance),
        )
        .route(
            "/dicomweb/studies/{study}/series/{series}/instances/{sop}/frames/{frame}/thumbnail",
            get(dicomweb::thumbnail_frame),
        )
        .layer(DefaultBodyLimit::disable());
    let api = Router::new()
        .route("/api/v1/me", get(api::me))
        .route("/api/v1/worklist", get(api::worklist))
        .route("/api/v1/worklist/next", post(api::claim_next))
        .route("/api/v1/notifications", get(api::notifications))
        .route("/api/v1/duty", get(api::duty))
        .route("/api/v1/exams/{id}", get(api::exam))
        .route("/api/v1/exams/{id}/claim", post(api::claim))
        .route("/api/v1/exams/{id}/release", post(api::release))
        .route("/api/v1/exams/{id}/reassign", post(api::reassign))
        .route(
            "/api/v1/exams/{id}/report",
            get(api::get_draft).put(api::save_draft),
        )
        .route("/api/v1/exams/{id}/report/sign", post(api::sign))
        .route(
            "/api/v1/exams/{id}/report/template",
            get(api::report_template),
        )
        .route(
            "/api/v1/exams/{id}/report/submit",
            post(api::submit_for_review),
        )
        .route("/api/v1/studies/{study}", get(api::study_status))
        .route(
            "/api/v1/studies/{study}/complete",
            post(api::complete_study),
        )
        .route("/api/v1/results", get(api::results))
        .route("/api/v1/results/prior", get(recognition::prior))
        .route(
            "/api/v1/results/{kind}/{id}/decision",
            post(recognition::decide),
        )
        .route("/api/v1/admin/recognition", get(recognition::rates))
        .route("/api/v1/audit", get(audit::export))
        .route("/api/v1/reports/{id}", get(api::report))
        .route("/api/v1/reports/{id}/verify", get(api::verify))
        .route("/api/v1/reports/{id}/amend", post(api::amend))
        .route("/api/v1/reports/{id}/revoke", post(api::revoke))
        .route("/api/v1/reports/{id}/sr", get(exports::sr))
        .route("/api/v1/reports/{id}/pdf", get(exports::pdf))
        .route("/reports/{id}/print", get(exports::print))
        // The QR code of a printed report: no sign-in, no patient data (see exports::verify_page).
        .route("/verify/{id}", get(exports::verify_page))
        .route("/api/v1/keys", get(api::keys))
        .route("/api/v1/admin/turnaround", get(metrics::turnaround))
        .route("/metrics", get(metrics::metrics))
        .route("/api/v1/admin/routing/reload", post(api::reload_routing))
        .route("/api/v1/exams/{id}/ecg", get(ecg::view))
        .route("/api/v1/exams/{id}/ecg/rendered", get(ecg::rendered))
        .route("/api/v1/lab/panels/{id}", get(lab::panel))
        .route("/api/v1/lab/panels/{id}/sign", post(lab_review::sign))
        .route("/api/v1/lab/panels/{id}/signoff", get(lab_review::signoff))
        .route("/api/v1/lab/review", get(lab_review::queue))
        .route("/api/v1/lab/review/{id}", get(lab_review::review_panel))
        .route("/api/v1/lab/critical", get(lab_review::register))
        .route("/api/v1/lab/critical/{id}", get(lab_review::case))
        .route("/api/v1/lab/critical/{id}/ack", post(lab_review::ack))
        .layer(DefaultBodyLimit::max(API_BODY_LIMIT));
    // Lab messages: the handlers read the body themselves up to `lab.max_message_bytes` (413 past it).
    let lab_in = Router::new()
        .route("/api/v1/lab/hl7v2", post(lab::hl7v2))
        .route("/api/v1/lab/fhir", post(lab::fhir))
        .layer(DefaultBodyLimit::disable());
    // An ECG file (aECG XML can be several MB) up to what the hub measures.
    let ecg_upload =
        Router::new()
            .route("/api/v1/ecg", post(ecg::upload))
            .layer(DefaultBodyLimit::max(
                yilian_app::ecg::MAX_ECG_INSTANCE_BYTES as usize,
            ));
    Router::new()
        .route("/healthz", get(api::healthz))
        .route("/readyz", get(api::readyz))
        .route("/api/openapi.json", get(openapi::serve))
        .merge(dicomweb)
        .merge(api)
        .merge(ecg_upload)
        .merge(lab_in)
        // FHIR R4 read API for lab results; its own fallback answers OperationOutcomes.
        .nest(
            "/fhir/r4",
            fhir::routes().layer(DefaultBodyLimit::max(API_BODY_LIMIT)),
        )
        .fallback(api::not_found)
        // Per-client rate and concurrency limits, and the lockout after failed authentications.
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limits::enforce,
        ))
        // Headers every response carries unless its handler set its own: no MIME sniffing, no framing,
        // no referrer, nothing cached by browsers or proxies (answers carry patient data), and a
        // content security policy that lets an API answer load nothing (pages will set their own).
        .layer(
            tower::ServiceBuilder::new()
                .layer(secure(header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
                .layer(secure(header::X_FRAME_OPTIONS, "DENY"))
                .layer(secure(header::REFERRER_POLICY, "no-referrer"))
                .layer(secure(header::CACHE_CONTROL, "no-store"))
                .layer(secure(
                    header::CONTENT_SECURITY_POLICY,
                    "default-src 'none'; frame-ancestors 'none'",
                )),
        )
        // A bug must not take the connection down silently: a panic becomes a 500 with no detail.
        .layer(CatchPanicLayer::custom(|_: Box<dyn std::any::Any + Send + 'static>| {
            tracing::error!("handler panicked");
            ApiError::new(axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal", "internal error").into_response()
        }))
        .layer(
            // One span per request, named by the matched route: URIs may carry patient identifiers
            // in query strings, so only the route template is recorded.
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                let route = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_string()).unwrap_or_else(|| "unmatched".into());
                tracing::info_span!("http", method = %req.method(), route = %route, user = tracing::field::Empty)
            }),
        )
        .with_state(state)
}

/// A response header set unless the handler set it.
fn secure(
    name: axum::http::HeaderName,
    value: &'static str,
) -> SetResponseHeaderLayer<axum::http::HeaderValue> {
    SetResponseHeaderLayer::if_not_present(name, axum::http::HeaderValue::from_static(value))
}

/// Serves until `shutdown` resolves.
pub async fn serve(
    hub: Hub,
    listener: TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    // The peer address reaches handlers and the limits (failed authentications are counted per address).
    axum::serve(
        listener,
        router(hub).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The background sweeps: routing (studies that are complete or quiet get routed), escalation
/// (overdue, unclaimed exams go up a tier), offers, critical-value escalation and webhook delivery.
/// With several replicas on one catalog only the holder of the `sweeps` lease runs them (ARCHITECTURE.md,
/// "Several replicas"); every replica follows routing reloads announced by the others and uploads
/// its own write-behind outbox. Runs until the task is aborted.
pub fn spawn_background(hub: Hub) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::join!(sweeps(hub.clone()), outbox(hub));
    })
}

/// Every sweep interval: follow other replicas' reloads; under the lease, run the sweeps.
async fn sweeps(hub: Hub) {
    let every = Duration::from_secs(hub.config.routing.sweep_interval_secs.max(1));
    // A holder that misses two sweeps in a row (dead, stalled, cut off from the catalog) loses the
    // lease at the third; renewed before each step so a long round keeps it.
    let ttl = (every * 3).max(Duration::from_secs(3));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match hub.follow_routing_reload().await {
            Ok(true) => tracing::info!("routing reloaded after another replica's reload"),
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "routing reload signal not read"),
        }
        if !hub.hold_sweep_lease(ttl).await {
            continue;
        }
        hub.record_sweep();
        match hub.route_due_studies().await {
            Ok(done) if !done.is_empty() => tracing::info!(count = done.len(), "routing sweep"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "routing sweep failed"),
        }
        if !hub.hold_sweep_lease(ttl).await {
            continue;
        }
        match hub.escalate_overdue().await {
            Ok(done) if !done.is_empty() => {
                tracing::warn!(count = done.len(), "escalation sweep")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "escalation sweep failed"),
        }
        if let Err(e) = hub.offer_waiting().await {
            tracing::warn!(error = %e, "offer sweep failed");
        }
        if let Err(e) = hub.escalate_critical_cases().await {
            tracing::warn!(error = %e, "critical-value escalation sweep failed");
        }
        if !hub.hold_sweep_lease(ttl).await {
            continue;
        }
        if let Err(e) = deliver_webhooks(&hub).await {
            tracing::warn!(error = %e, "webhook delivery failed");
        }
    }
}

/// Every replica, every second: uploads its own write-behind outbox (`blobs.ack_after = "local"`;
/// a no-op for other stores). After a failure it waits longer, up to a minute, before trying again.
async fn outbox(hub: Hub) {
    let mut wait = Duration::from_secs(1);
    loop {
        tokio::time::sleep(wait).await;
        match hub.blobs.flush_outbox().await {
            Ok(n) => {
                if n > 0 {
                    tracing::info!(count = n, "outbox uploaded to the blob store");
                }
                wait = Duration::from_secs(1);
            }
            Err(e) => {
                wait = (wait * 2).min(Duration::from_secs(60));
                tracing::warn!(error = %e, retry_in_secs = wait.as_secs(), "outbox upload failed");
            }
        }
    }
}

/// One webhook client (and its connection pool) per trusted-CA setting for the process, not one per
/// sweep. With a CA bundle only it is trusted (`tls_certs_only`); without, the system's roots are.
fn webhook_client(ca_pem: Option<&[u8]>) -> Result<reqwest::Client, yilian_app::PortError> {
    use std::collections::HashMap;
    use std::sync::{Mutex, OnceLock};
    static CLIENTS: OnceLock<Mutex<HashMap<Option<Vec<u8>>, reqwest::Client>>> = OnceLock::new();
    let unavailable =
        |m: String| yilian_app::PortError::Unavailable(format!("webhook client: {m}"));
    let key = ca_pem.map(<[u8]>::to_vec);
    let clients = CLIENTS.get_or_init(Default::default);
    if let Some(c) = clients.lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(c);
    }
    let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(5));
    if let Some(pem) = ca_pem {
        let certs =
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| unavailable(e.to_string()))?;
        if certs.is_empty() {
            return Err(unavailable("webhook_ca_file holds no certificate".into()));
        }
        builder = builder.tls_certs_only(certs);
    }
    let client = builder.build().map_err(|e| unavailable(e.to_string()))?;
    if let Ok(mut m) = clients.lock() {
        m.insert(key, client.clone());
    }
    Ok(client)
}

/// Sends pending notifications to `notifications.webhook_url`: JSON, signed with
/// `X-Yilian-Signature: sha256=<hex HMAC-SHA256 of the body>` when a secret is set. A 2xx answer marks
/// the notification sent; anything else is retried on the next sweep, up to
/// `yilian_app::notify::MAX_WEBHOOK_ATTEMPTS`. Returns how many were sent.
pub async fn deliver_webhooks(hub: &Hub) -> Result<usize, yilian_app::PortError> {
    use hmac::{KeyInit, Mac};
    let Some(url) = hub.config.notifications.webhook_url.clone() else {
        return Ok(0);
    };
    let client = webhook_client(hub.config.notifications.webhook_ca_pem.as_deref())?;
    let mut sent = 0;
    for n in hub.pending_webhooks(50).await? {
        let body = api::notification_json(&hub.config.alliance.id, &n).to_string();
        let mut req = client
            .post(&url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(secret) = &hub.config.notifications.webhook_secret
            && let Ok(mut mac) =
                <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes())
        {
            mac.update(body.as_bytes());
            req = req.header(
                "x-yilian-signature",
                format!("sha256={}", hex::encode(mac.finalize().into_bytes())),
            );
        }
        let ok = match req.send().await {
            Ok(r) => r.status().is_success(),
            Err(e) => {
                tracing::warn!(error = %e, notification = %n.notification_id, "webhook not delivered");
                false
            }
        };
        hub.webhook_attempted(&n, ok).await?;
        if ok {
            sent += 1;
        }
    }
    Ok(sent)
}
