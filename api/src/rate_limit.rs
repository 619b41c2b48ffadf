//! Per-client-IP rate limit on the credential endpoints (login, refresh),
//! answered with the service's 429 problem and `Retry-After`.

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::NotUntil;
use actix_governor::{GovernorConfig, GovernorConfigBuilder, KeyExtractor, PeerIpKeyExtractor};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

use crate::problem::ApiError;

pub type AuthRateLimit = GovernorConfig<ClientIp, NoOpMiddleware<QuantaInstant>>;

pub fn auth_rate_limit(per_second: u64, burst: u32) -> anyhow::Result<AuthRateLimit> {
    GovernorConfigBuilder::default()
        .requests_per_second(per_second.max(1))
        .burst_size(burst.max(1))
        .key_extractor(ClientIp)
        .finish()
        .ok_or_else(|| anyhow::anyhow!("invalid AUTH_RATE_PER_SECOND or AUTH_RATE_BURST"))
}

/// The peer address (an IPv6 client by its /56), as `PeerIpKeyExtractor`.
#[derive(Clone, Copy)]
pub struct ClientIp;

impl KeyExtractor for ClientIp {
    type Key = <PeerIpKeyExtractor as KeyExtractor>::Key;
    type KeyExtractionError = <PeerIpKeyExtractor as KeyExtractor>::KeyExtractionError;

    fn extract(&self, req: &ServiceRequest) -> Result<Self::Key, Self::KeyExtractionError> {
        PeerIpKeyExtractor.extract(req)
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        metrics::counter!("auth_rate_limited_total").increment(1);
        ApiError::TooManyRequests {
            retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
        .error_response()
    }
}
