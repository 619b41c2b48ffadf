use std::path::PathBuf;
use std::sync::Arc;

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpResponse};
use serde_json::json;
use sqlx::PgPool;

use crate::broker::BrokerLink;

/// Longest wait for one dependency: readiness answers even when one hangs.
const CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);
/// `Retry-After` of a not-ready answer.
const NOT_READY_RETRY_AFTER_SECONDS: u32 = 5;

/// The dependencies `/health/ready` names, as its problem body lists them.
pub const DATABASE: &str = "database";
pub const BROKER: &str = "broker";
pub const SIGNING_KEY: &str = "signing_key";
pub const AUDIT_SIGNING_KEY: &str = "audit_signing_key";

/// Where the problem types live, as the api names them
/// (`https://identity.example/problems/<kind>`, see `api::problem`).
pub const PROBLEM_TYPE_BASE: &str = "https://identity.example/problems/";
/// The media type of a problem answer (RFC 7807).
pub const PROBLEM: &str = "application/problem+json";
/// What every health route answers (`HEAD` like `GET`).
pub const HEALTH_ALLOW: &str = "GET, HEAD";

/// Whether the audit checkpoint signer signs, or refuses and why: shown in
/// `/health/ready`'s body (`audit_signer`) without making the process
/// unready (publishing goes on; only signing stops).
#[derive(Clone, Debug, Default)]
pub struct SignerHealth(Arc<std::sync::RwLock<Option<serde_json::Value>>>);

impl SignerHealth {
    /// Signing; nothing to report.
    pub fn signing(&self) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
    }

    /// Refusing to sign, with what the signer found (no secrets).
    pub fn refusing(&self, found: serde_json::Value) {
        *self
            .0
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(found);
    }

    /// What `/health/ready` shows.
    pub fn report(&self) -> serde_json::Value {
        match &*self
            .0
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
        {
            None => json!({ "status": "signing" }),
            Some(found) => json!({ "status": "refusing", "found": found }),
        }
    }
}

/// What `/health/ready` checks: PostgreSQL answers, the broker link is up,
/// and each signing key file the process was started with is still readable
/// (it would not start again without it).
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub broker: Arc<BrokerLink>,
    /// Dependency name ([`SIGNING_KEY`], [`AUDIT_SIGNING_KEY`]) and file.
    pub key_files: Vec<(&'static str, PathBuf)>,
    /// The audit signer's state, in processes that run the relay.
    pub signer: Option<SignerHealth>,
}

impl Readiness {
    /// A process that needs the database and the broker (and no key).
    pub fn new(pool: PgPool, broker: Arc<BrokerLink>) -> Self {
        Self {
            pool,
            broker,
            key_files: Vec::new(),
            signer: None,
        }
    }

    /// Also reports the audit signer's state.
    pub fn with_signer(mut self, signer: SignerHealth) -> Self {
        self.signer = Some(signer);
        self
    }

    /// Also needs the key file at `path`, named `dependency`.
    pub fn with_key_file(mut self, dependency: &'static str, path: PathBuf) -> Self {
        self.key_files.push((dependency, path));
        self
    }

    /// Each dependency by name, and whether it is available now.
    pub async fn check(&self) -> Vec<(&'static str, bool)> {
        let database = async {
            let query = sqlx::query("SELECT 1").execute(&self.pool);
            tokio::time::timeout(CHECK_TIMEOUT, query)
                .await
                .is_ok_and(|done| done.is_ok())
        };
        // Reconnects when the link is down, so readiness recovers by itself.
        let broker = async {
            tokio::time::timeout(CHECK_TIMEOUT, self.broker.connection())
                .await
                .is_ok_and(|connection| connection.is_ok())
        };
        let (database, broker) = tokio::join!(database, broker);
        let mut checks = vec![(DATABASE, database), (BROKER, broker)];
        for (name, path) in &self.key_files {
            checks.push((*name, std::fs::File::open(path).is_ok()));
        }
        checks
    }
}

/// `/health/live`, `/health/ready` and `/metrics` (Prometheus text format).
/// Each answers `GET` and `HEAD` (actix sends no body to a `HEAD`); any
/// other method is a `405` problem with `Allow: GET, HEAD` (RFC 9110).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let metrics = crate::metrics::handle();
    let render = move || {
        let body = metrics.render();
        async move {
            HttpResponse::Ok()
                .content_type("text/plain; version=0.0.4")
                .body(body)
        }
    };
    cfg.service(
        web::resource("/health/live")
            .route(web::get().to(live))
            .route(web::head().to(live))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/health/ready")
            .route(web::get().to(ready))
            .route(web::head().to(ready))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/metrics")
            .route(web::get().to(render.clone()))
            .route(web::head().to(render))
            .default_service(web::to(method_not_allowed)),
    );
}

/// An RFC 7807 problem, shaped like the api's (`type`, `title`, `status`,
/// `detail`), for the processes that serve only health and metrics.
pub fn problem(status: StatusCode, kind: &str, title: &str, detail: &str) -> HttpResponse {
    let body = json!({
        "type": format!("{PROBLEM_TYPE_BASE}{kind}"),
        "title": title,
        "status": status.as_u16(),
        "detail": detail,
    });
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM))
        .body(body.to_string())
}

/// A path the health server does not serve: `404` problem (`not-found`).
pub async fn not_found() -> HttpResponse {
    problem(
        StatusCode::NOT_FOUND,
        "not-found",
        "Not found",
        "resource not found",
    )
}

/// A health route asked with another method: `405` problem with `Allow`.
async fn method_not_allowed() -> HttpResponse {
    let mut response = problem(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        "Method not allowed",
        "this method is not allowed here",
    );
    response.headers_mut().insert(
        header::ALLOW,
        header::HeaderValue::from_static(HEALTH_ALLOW),
    );
    response
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let checks = readiness.check().await;
    let missing: Vec<&str> = checks
        .iter()
        .filter(|(_, available)| !available)
        .map(|(name, _)| *name)
        .collect();
    let checks: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, available)| (name.to_owned(), available.into()))
        .collect();
    let signer = readiness.signer.as_ref().map(SignerHealth::report);
    if missing.is_empty() {
        let mut body = json!({ "status": "ok", "checks": checks });
        if let Some(signer) = signer {
            body["audit_signer"] = signer;
        }
        return HttpResponse::Ok().json(body);
    }
    not_ready(&missing, checks, signer)
}

/// `503` problem (`not-ready`) naming each missing dependency in `detail`
/// and in `missing`, with every check in `checks`.
fn not_ready(
    missing: &[&str],
    checks: serde_json::Map<String, serde_json::Value>,
    signer: Option<serde_json::Value>,
) -> HttpResponse {
    let status = StatusCode::SERVICE_UNAVAILABLE;
    let mut body = json!({
        "type": format!("{PROBLEM_TYPE_BASE}not-ready"),
        "title": "Not ready",
        "status": status.as_u16(),
        "detail": format!("unavailable: {}", missing.join(", ")),
        "missing": missing,
        "checks": checks,
    });
    if let Some(signer) = signer {
        body["audit_signer"] = signer;
    }
    HttpResponse::build(status)
        .insert_header((header::CONTENT_TYPE, PROBLEM))
        .insert_header((header::RETRY_AFTER, NOT_READY_RETRY_AFTER_SECONDS))
        .body(body.to_string())
}

/// Binds `address` and serves health and metrics there; returns the bound
/// port (`address` may ask for port 0) and the server to await.
pub fn serve_on(
    address: &str,
    readiness: Readiness,
) -> anyhow::Result<(u16, actix_web::dev::Server)> {
    use anyhow::Context;
    let listener = std::net::TcpListener::bind(address)
        .with_context(|| format!("binding the health address {address}"))?;
    let port = listener
        .local_addr()
        .context("reading the bound port")?
        .port();
    let server = serve(listener, readiness).context("starting the health server")?;
    Ok((port, server))
}

/// The HTTP server of a process that serves only health and metrics (the
/// projector, the worker): one actix worker is plenty. Any other path is a
/// `404` problem, like the api's.
pub fn serve(
    listener: std::net::TcpListener,
    readiness: Readiness,
) -> std::io::Result<actix_web::dev::Server> {
    let readiness = web::Data::new(readiness);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(readiness.clone())
            .configure(configure)
            .default_service(web::to(not_found))
    })
    .workers(1)
    .listen(listener)?
    .run())
}
