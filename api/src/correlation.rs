//! Every request gets a correlation id: the caller's `X-Correlation-Id` when
//! it is sane, a new one otherwise. It is put back on the request (so the
//! command's metadata and the request span see the same id) and echoed on
//! the response.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::Error;
use tracing::Span;
use tracing_actix_web::{DefaultRootSpanBuilder, RootSpanBuilder};
use uuid::Uuid;

pub const CORRELATION_HEADER: &str = "x-correlation-id";
const MAX_LEN: usize = 128;

pub async fn assign(
    mut req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = sane(&req).unwrap_or_else(|| Uuid::new_v4().to_string());
    let name = HeaderName::from_static(CORRELATION_HEADER);
    // Only visible ASCII gets here, which is always a valid header value.
    let value = HeaderValue::from_str(&id).ok();
    match &value {
        Some(value) => req.headers_mut().insert(name.clone(), value.clone()),
        None => req.headers_mut().remove(&name),
    };
    let mut response = next.call(req).await?;
    if let Some(value) = value {
        response.headers_mut().insert(name, value);
    }
    Ok(response)
}

fn sane(req: &ServiceRequest) -> Option<String> {
    let id = req.headers().get(CORRELATION_HEADER)?.to_str().ok()?;
    let acceptable =
        !id.is_empty() && id.len() <= MAX_LEN && id.chars().all(|c| c.is_ascii_graphic());
    acceptable.then(|| id.to_string())
}

/// The request span of `tracing-actix-web`, with the correlation id.
pub struct CorrelatedRootSpan;

impl RootSpanBuilder for CorrelatedRootSpan {
    fn on_request_start(request: &ServiceRequest) -> Span {
        let correlation_id = request
            .headers()
            .get(CORRELATION_HEADER)
            .and_then(|value| value.to_str().ok())
            .unwrap_or_default();
        tracing_actix_web::root_span!(request, correlation_id = %correlation_id)
    }

    fn on_request_end<B: MessageBody>(span: Span, outcome: &Result<ServiceResponse<B>, Error>) {
        DefaultRootSpanBuilder::on_request_end(span, outcome);
    }
}
