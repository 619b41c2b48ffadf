//! Per-client-IP rate limit on the credential endpoints (login, refresh,
//! password change) and on open sign-up, answered with the service's 429
//! problem and `Retry-After`. The budget is in this process's memory.

use std::net::IpAddr;
use std::sync::Arc;

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::{DefaultKeyedRateLimiter, NotUntil};
use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError};

use crate::client_address::client_address;
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

/// The client's address (see [`crate::client_address`]); an IPv6 client by
/// its /56, as `PeerIpKeyExtractor` does for the peer.
#[derive(Clone, Copy)]
pub struct ClientIp;

impl KeyExtractor for ClientIp {
    type Key = IpAddr;
    type KeyExtractionError = SimpleKeyExtractionError<&'static str>;

    fn extract(&self, req: &ServiceRequest) -> Result<Self::Key, Self::KeyExtractionError> {
        client_key(req.request())
            .ok_or_else(|| SimpleKeyExtractionError::new("the client's address is unknown"))
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        refusal(negative).error_response()
    }
}

fn client_key(req: &HttpRequest) -> Option<IpAddr> {
    match client_address(req)? {
        IpAddr::V6(address) => {
            let mut octets = address.octets();
            octets[7..].fill(0);
            Some(IpAddr::V6(octets.into()))
        }
        address => Some(address),
    }
}

fn refusal(negative: &NotUntil<QuantaInstant>) -> ApiError {
    let wait = negative.wait_time_from(DefaultClock::default().now());
    metrics::counter!(crate::http_metrics::RATE_LIMITED).increment(1);
    ApiError::TooManyRequests {
        retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
    }
}

/// Login's per-address budget, taken by a handler that learns only once
/// it has authenticated the caller whether the limit applies: `POST
/// /v1/users` is a sign-up, or an administrator's command.
#[derive(Clone)]
pub struct AddressRateLimit(Arc<DefaultKeyedRateLimiter<IpAddr>>);

impl AddressRateLimit {
    /// The same buckets as `config`'s, not new ones: a sign-up and a
    /// login from one address spend one budget.
    pub fn sharing(config: &AuthRateLimit) -> Self {
        Self(config.limiter())
    }

    /// Takes one request from the client's bucket. A request without an
    /// address (none over TCP) has no bucket.
    pub fn check(&self, req: &HttpRequest) -> Result<(), ApiError> {
        let Some(key) = client_key(req) else {
            return Ok(());
        };
        self.0
            .check_key(&key)
            .map_err(|negative| refusal(&negative))
    }
}
