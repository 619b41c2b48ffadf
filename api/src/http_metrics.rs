//! Request latency by method, route pattern and status, and the rate
//! limit's refusals. Labels are bounded: a method outside [`METHODS`] is
//! `other` and a path that matched no route is `unmatched`, so a client
//! cannot create series by sending made-up methods or paths.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::Error;
use metrics::{describe_counter, describe_histogram, Unit};

pub use crate::request_head_problems::REQUEST_HEADS_REFUSED;

/// Request latency histogram, labelled `method`, `route`, `status`.
pub const REQUEST_DURATION: &str = "http_request_duration_seconds";
/// Login, refresh, password-change and sign-up requests answered 429 by
/// the per-address rate limit.
pub const RATE_LIMITED: &str = "auth_rate_limited_total";

/// The metrics registered at start (at zero).
pub const NAMES: &[&str] = &[RATE_LIMITED, REQUEST_HEADS_REFUSED];
/// The metrics that appear with the first request.
pub const OBSERVED: &[&str] = &[REQUEST_DURATION];

/// The methods that may become a `method` label; any other is [`OTHER_METHOD`].
pub const METHODS: &[Method] = &[
    Method::GET,
    Method::HEAD,
    Method::POST,
    Method::PUT,
    Method::PATCH,
    Method::DELETE,
    Method::OPTIONS,
];
/// The `method` label of a method outside [`METHODS`].
pub const OTHER_METHOD: &str = "other";
/// The `route` label of a request no route matched.
pub const UNMATCHED_ROUTE: &str = "unmatched";

/// Describes the api's HTTP metrics and starts its counter at zero.
pub fn register() {
    describe_histogram!(
        REQUEST_DURATION,
        Unit::Seconds,
        "HTTP request latency by method, route pattern and status."
    );
    describe_counter!(
        RATE_LIMITED,
        Unit::Count,
        "Login, refresh, password-change and sign-up requests answered 429 by the per-address rate limit."
    );
    metrics::counter!(RATE_LIMITED).increment(0);
    crate::request_head_problems::register_metrics();
}

pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let started = Instant::now();
    let method = method_label(req.method());
    let response = next.call(req).await?;
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| UNMATCHED_ROUTE.into());
    let status = response.status().as_u16().to_string();
    metrics::histogram!(
        REQUEST_DURATION,
        "method" => method,
        "route" => route,
        "status" => status
    )
    .record(started.elapsed().as_secs_f64());
    Ok(response)
}

fn method_label(method: &Method) -> &'static str {
    METHODS
        .iter()
        .find(|known| *known == method)
        .map_or(OTHER_METHOD, Method::as_str)
}
