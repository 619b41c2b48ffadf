//! Per-client-IP rate limit on the credential endpoints (login, refresh),
//! answered with the service's 429 problem and `Retry-After`.

use actix_governor::governor::clock::{Clock, DefaultClock, QuantaInstant};
use actix_governor::governor::middleware::NoOpMiddleware;
use actix_governor::governor::NotUntil;
use std::net::IpAddr;

use actix_governor::{
    GovernorConfig, GovernorConfigBuilder, KeyExtractor, SimpleKeyExtractionError,
};
use actix_web::dev::ServiceRequest;
use actix_web::{HttpResponse, HttpResponseBuilder, ResponseError};

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
        match client_address(req.request()) {
            Some(IpAddr::V6(address)) => {
                let mut octets = address.octets();
                octets[7..].fill(0);
                Ok(IpAddr::V6(octets.into()))
            }
            Some(address) => Ok(address),
            None => Err(SimpleKeyExtractionError::new(
                "the client's address is unknown",
            )),
        }
    }

    fn exceed_rate_limit_response(
        &self,
        negative: &NotUntil<QuantaInstant>,
        _response: HttpResponseBuilder,
    ) -> HttpResponse {
        let wait = negative.wait_time_from(DefaultClock::default().now());
        metrics::counter!(crate::http_metrics::RATE_LIMITED).increment(1);
        ApiError::TooManyRequests {
            retry_after_seconds: wait.as_secs_f64().ceil().max(1.0) as u64,
        }
        .error_response()
    }
}
