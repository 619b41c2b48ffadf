use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;
use sqlx::PgPool;

use crate::broker::BrokerLink;

const BROKER_CHECK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

/// What `/health/ready` checks: PostgreSQL answers and the broker link is up.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub broker: Arc<BrokerLink>,
}

/// `/health/live`, `/health/ready` and `/metrics` (Prometheus text format).
pub fn configure(cfg: &mut web::ServiceConfig) {
    let metrics = crate::metrics::handle();
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route(
            "/metrics",
            web::get().to(move || {
                let body = metrics.render();
                async move {
                    HttpResponse::Ok()
                        .content_type("text/plain; version=0.0.4")
                        .body(body)
                }
            }),
        );
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let database = sqlx::query("SELECT 1")
        .execute(&readiness.pool)
        .await
        .is_ok();
    // Reconnects when the link is down, so readiness recovers by itself.
    let broker = tokio::time::timeout(BROKER_CHECK_TIMEOUT, readiness.broker.connection())
        .await
        .is_ok_and(|connection| connection.is_ok());
    let body = json!({
        "status": if database && broker { "ok" } else { "unavailable" },
        "checks": { "database": database, "broker": broker },
    });
    if database && broker {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
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
/// projector, the worker): one actix worker is plenty.
pub fn serve(
    listener: std::net::TcpListener,
    readiness: Readiness,
) -> std::io::Result<actix_web::dev::Server> {
    let readiness = web::Data::new(readiness);
    Ok(actix_web::HttpServer::new(move || {
        actix_web::App::new()
            .app_data(readiness.clone())
            .configure(configure)
    })
    .workers(1)
    .listen(listener)?
    .run())
}
