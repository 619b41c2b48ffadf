use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde_json::json;
use sqlx::PgPool;

use crate::broker::BrokerLink;

/// What `/health/ready` checks: PostgreSQL answers and the broker link is up.
#[derive(Clone)]
pub struct Readiness {
    pub pool: PgPool,
    pub broker: Arc<BrokerLink>,
}

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready));
}

async fn live() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

async fn ready(readiness: web::Data<Readiness>) -> HttpResponse {
    let database = sqlx::query("SELECT 1")
        .execute(&readiness.pool)
        .await
        .is_ok();
    let broker = readiness.broker.is_connected();
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
