//! `/v1/webhooks`: integrators' endpoints and their deliveries. Every route
//! needs `webhooks:write` (a webhook's deliveries carry every event it
//! subscribes to, so reading them is as strong as changing them).

use std::collections::BTreeSet;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use app::webhooks::{
    Delivery, DeliveryAttempt, DeliveryQueries, WebhookChanges, WebhookCommands, WebhookQueries,
};
use chrono::{DateTime, Utc};
use domain::webhook::{EventTypePattern, EventTypePatterns, WebhookDescription, WebhookUrl};
use domain::{Permission, Webhook};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::field;
use super::users::CommandAccepted;
use crate::auth::principal::WebhooksWrite;
use crate::auth::Allowed;
use crate::extract::{RequestContext, ValidJson, ValidQuery};
use crate::problem::{ApiError, FieldError, Problem, PROBLEM};

pub fn configure(cfg: &mut web::ServiceConfig) {
    let resource = |path: &str| {
        web::resource(path.to_owned()).default_service(web::to(super::method_not_allowed))
    };
    cfg.service(
        resource("/webhooks")
            .route(web::post().to(create))
            .route(web::get().to(list)),
    )
    .service(
        resource("/webhooks/{id}")
            .route(web::get().to(get))
            .route(web::patch().to(update))
            .route(web::delete().to(delete)),
    )
    .service(resource("/webhooks/{id}/rotate-secret").route(web::post().to(rotate_secret)))
    .service(resource("/webhooks/{id}/deliveries").route(web::get().to(deliveries)))
    .service(
        resource("/webhooks/{id}/deliveries/{delivery_id}/redeliver")
            .route(web::post().to(redeliver)),
    );
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateWebhookRequest {
    /// `https://…` (plain `http` only with WEBHOOKS_ALLOW_HTTP); its host
    /// must not resolve to an internal address.
    #[schema(max_length = 2000, format = "uri")]
    url: String,
    /// Event types (`session.revoked`), every type of an aggregate
    /// (`user.*`) or `*`; 1 to 20.
    #[schema(min_items = 1, max_items = 20, value_type = Vec<crate::closed_sets::EventTypeSelector>)]
    event_types: Vec<String>,
    /// Up to 500 characters.
    #[serde(default)]
    #[schema(
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: String,
}

/// Give any of the fields; the others stay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(min_properties = 1)]
pub struct UpdateWebhookRequest {
    #[schema(max_length = 2000, format = "uri", nullable = false)]
    url: Option<String>,
    #[schema(min_items = 1, max_items = 20, nullable = false, value_type = Option<Vec<crate::closed_sets::EventTypeSelector>>)]
    event_types: Option<Vec<String>>,
    #[schema(
        nullable = false,
        max_length = 500,
        pattern = r"^[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]*$"
    )]
    description: Option<String>,
    #[schema(nullable = false)]
    enabled: Option<bool>,
}

/// The signing secret is shown here only: keep it.
#[derive(Serialize, ToSchema)]
pub struct SecretIssued {
    id: Uuid,
    position: i64,
    /// `whsec_` + base64 of 32 bytes (Standard Webhooks).
    secret: String,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookView {
    id: Uuid,
    url: String,
    event_types: Vec<String>,
    description: String,
    enabled: bool,
}

#[derive(Serialize, ToSchema)]
pub struct WebhookList {
    items: Vec<WebhookView>,
}

#[derive(Serialize, ToSchema)]
pub struct AttemptView {
    started_at: DateTime<Utc>,
    duration_ms: i32,
    /// The receiver's status, if it answered.
    status_code: Option<i32>,
    /// A timeout, a refused address or a connection error.
    error: Option<String>,
    /// `delivered`, `failed` or `dead`.
    outcome: String,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryView {
    delivery_id: Uuid,
    /// The `webhook-id` header: the event's id.
    event_id: Uuid,
    event_type: String,
    global_position: i64,
    /// `pending`, `delivered` or `dead`.
    status: String,
    /// Failed attempts since it was (re)scheduled.
    failures: i32,
    /// When a pending delivery is tried next.
    next_attempt_at: Option<DateTime<Utc>>,
    created_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    attempts: Vec<AttemptView>,
}

#[derive(Serialize, ToSchema)]
pub struct DeliveryList {
    /// Newest first.
    items: Vec<DeliveryView>,
}

#[derive(Serialize, ToSchema)]
pub struct Redelivery {
    delivery_id: Uuid,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct NoParams {}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct DeliveryParams {
    /// 1 to 200, default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 200)]
    limit: Option<String>,
}

#[utoipa::path(
    post,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = CreateWebhookRequest,
    responses(
        (status = 201, description = "Registered; Location names it; the secret is shown this once", body = SecretIssued),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs webhooks:write and audit:read", body = Problem, content_type = PROBLEM),
        (status = 409, description = "`webhook-limit-reached`: WEBHOOKS_MAX webhooks exist; delete one first", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A bad or internal url, an unknown event type, too many or none, a long description (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn create(
    commands: web::Data<WebhookCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<WebhooksWrite>,
    ValidJson(body): ValidJson<CreateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    // A webhook receives events as the audit log holds them: choosing
    // where they go is reading them.
    principal.require(Permission::AuditRead)?;
    let mut errors = Vec::new();
    let url = field(&mut errors, "url", WebhookUrl::parse(&body.url));
    let event_types = event_types(&body.event_types, &mut errors);
    let description = field(
        &mut errors,
        "description",
        WebhookDescription::parse(&body.description),
    );
    let (Some(url), Some(event_types), Some(description)) = (url, event_types, description) else {
        return Err(ApiError::Validation(errors));
    };
    principal.require_step_up()?;
    let issued = commands
        .register(&context, &principal.actor(), url, event_types, description)
        .await?;
    Ok(HttpResponse::Created()
        .insert_header((header::LOCATION, format!("/v1/webhooks/{}", issued.id)))
        .json(SecretIssued {
            id: issued.id,
            position: issued.position,
            secret: issued.secret.expose().to_owned(),
        }))
}

#[utoipa::path(
    patch,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    request_body = UpdateWebhookRequest,
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Changed (no event when nothing changes)", body = CommandAccepted),
        (status = 403, description = "Needs webhooks:write and audit:read", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted webhook", body = Problem, content_type = PROBLEM),
        (status = 422, description = "A bad field (named)", body = Problem, content_type = PROBLEM),
    )
)]
async fn update(
    commands: web::Data<WebhookCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<WebhooksWrite>,
    id: web::Path<String>,
    ValidJson(body): ValidJson<UpdateWebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    principal.require(Permission::AuditRead)?;
    let id = webhook_id(&id)?;
    let changes = changes(body)?;
    let position = commands
        .update(&context, &principal.actor(), id, changes)
        .await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    delete,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "Deleted: nothing more is delivered to it", body = CommandAccepted),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or already deleted webhook", body = Problem, content_type = PROBLEM),
    )
)]
async fn delete(
    commands: web::Data<WebhookCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<WebhooksWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&id)?;
    let position = commands.delete(&context, &principal.actor(), id).await?;
    Ok(HttpResponse::Ok().json(CommandAccepted::new(id, position)))
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/rotate-secret",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path)),
    responses(
        (status = 200, description = "A new secret, shown this once; the old one keeps signing beside it for the rotation overlap", body = SecretIssued),
        (status = 401, description = "No valid access token, or (`step-up-required`) a second factor not proved recently: `POST /v1/auth/step-up`", body = Problem, content_type = PROBLEM),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted webhook", body = Problem, content_type = PROBLEM),
    )
)]
async fn rotate_secret(
    commands: web::Data<WebhookCommands>,
    context: RequestContext,
    Allowed(principal, _): Allowed<WebhooksWrite>,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&id)?;
    principal.require_step_up()?;
    let issued = commands
        .rotate_secret(&context, &principal.actor(), id)
        .await?;
    Ok(HttpResponse::Ok().json(SecretIssued {
        id: issued.id,
        position: issued.position,
        secret: issued.secret.expose().to_owned(),
    }))
}

#[utoipa::path(
    get,
    path = "/v1/webhooks",
    tag = "webhooks",
    security(("bearer" = [])),
    params(NoParams),
    responses(
        (status = 200, description = "Every live webhook, from the event store (no secrets)", body = WebhookList),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
    )
)]
async fn list(
    queries: web::Data<WebhookQueries>,
    _: Allowed<WebhooksWrite>,
    _: ValidQuery<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let items = queries.list().await?.iter().filter_map(view).collect();
    Ok(HttpResponse::Ok().json(WebhookList { items }))
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), NoParams),
    responses(
        (status = 200, description = "The webhook, from the event store (no secret)", body = WebhookView),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted webhook", body = Problem, content_type = PROBLEM),
    )
)]
async fn get(
    queries: web::Data<WebhookQueries>,
    _: Allowed<WebhooksWrite>,
    id: web::Path<String>,
    _: ValidQuery<NoParams>,
) -> Result<HttpResponse, ApiError> {
    let webhook = queries.get(webhook_id(&id)?).await?;
    let found = view(&webhook).ok_or(ApiError::NotFound("webhook"))?;
    Ok(HttpResponse::Ok().json(found))
}

#[utoipa::path(
    get,
    path = "/v1/webhooks/{id}/deliveries",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), DeliveryParams),
    responses(
        (status = 200, description = "Recent deliveries, newest first, each with its attempts", body = DeliveryList),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown or deleted webhook", body = Problem, content_type = PROBLEM),
    )
)]
async fn deliveries(
    queries: web::Data<WebhookQueries>,
    deliveries: web::Data<DeliveryQueries>,
    _: Allowed<WebhooksWrite>,
    id: web::Path<String>,
    ValidQuery(params): ValidQuery<DeliveryParams>,
) -> Result<HttpResponse, ApiError> {
    let id = webhook_id(&id)?;
    let limit = limit(params.limit.as_deref())?;
    queries.get(id).await?;
    let items = deliveries
        .recent(id, limit)
        .await?
        .into_iter()
        .map(delivery_view)
        .collect();
    Ok(HttpResponse::Ok().json(DeliveryList { items }))
}

#[utoipa::path(
    post,
    path = "/v1/webhooks/{id}/deliveries/{delivery_id}/redeliver",
    tag = "webhooks",
    security(("bearer" = [])),
    params(("id" = Uuid, Path), ("delivery_id" = Uuid, Path)),
    responses(
        (status = 202, description = "Scheduled now, with a fresh count of attempts", body = Redelivery),
        (status = 403, description = "Needs webhooks:write", body = Problem, content_type = PROBLEM),
        (status = 404, description = "Unknown webhook, or not one of its deliveries", body = Problem, content_type = PROBLEM),
    )
)]
async fn redeliver(
    queries: web::Data<WebhookQueries>,
    deliveries: web::Data<DeliveryQueries>,
    _: Allowed<WebhooksWrite>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, delivery_id) = path.into_inner();
    let id = webhook_id(&id)?;
    let delivery_id = Uuid::parse_str(&delivery_id).map_err(|_| ApiError::NotFound("delivery"))?;
    queries.get(id).await?;
    deliveries.redeliver(id, delivery_id).await?;
    Ok(HttpResponse::Accepted().json(Redelivery { delivery_id }))
}

fn view(webhook: &Webhook) -> Option<WebhookView> {
    Some(WebhookView {
        id: webhook.id()?,
        url: webhook.url()?.as_str().to_owned(),
        event_types: webhook
            .event_types()?
            .iter()
            .map(|pattern| pattern.as_str().to_owned())
            .collect(),
        description: webhook.description().as_str().to_owned(),
        enabled: webhook.is_enabled(),
    })
}

fn delivery_view(delivery: Delivery) -> DeliveryView {
    let attempt = |attempt: DeliveryAttempt| AttemptView {
        started_at: attempt.started_at,
        duration_ms: attempt.duration_ms,
        status_code: attempt.status_code,
        error: attempt.error,
        outcome: attempt.outcome,
    };
    DeliveryView {
        delivery_id: delivery.delivery_id,
        event_id: delivery.event_id,
        event_type: delivery.event_type,
        global_position: delivery.global_position,
        status: delivery.status,
        failures: delivery.failures,
        next_attempt_at: delivery.next_attempt_at,
        created_at: delivery.created_at,
        completed_at: delivery.completed_at,
        attempts: delivery.attempts.into_iter().map(attempt).collect(),
    }
}

/// The changed fields, validated; every bad one named at once.
fn changes(body: UpdateWebhookRequest) -> Result<WebhookChanges, ApiError> {
    let fields = ["url", "event_types", "description", "enabled"];
    if body.url.is_none()
        && body.event_types.is_none()
        && body.description.is_none()
        && body.enabled.is_none()
    {
        let message = "give at least one of url, event_types, description, enabled";
        let errors = fields.map(|field| FieldError::new(field, message));
        return Err(ApiError::Validation(errors.into()));
    }
    let mut errors = Vec::new();
    let mut parse = |raw: Option<String>, name, parse: fn(&str) -> Result<_, _>| {
        raw.and_then(|raw| field(&mut errors, name, parse(&raw)))
    };
    let url = parse(body.url, "url", WebhookUrl::parse);
    let description = body
        .description
        .and_then(|raw| field(&mut errors, "description", WebhookDescription::parse(&raw)));
    let event_types = body
        .event_types
        .and_then(|raw| event_types(&raw, &mut errors));
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    Ok(WebhookChanges {
        url,
        event_types,
        description,
        enabled: body.enabled,
    })
}

/// Every pattern parsed (each bad one named by its index), then the set's rules.
fn event_types(raw: &[String], errors: &mut Vec<FieldError>) -> Option<EventTypePatterns> {
    let before = errors.len();
    let patterns: BTreeSet<EventTypePattern> = raw
        .iter()
        .enumerate()
        .filter_map(|(index, pattern)| {
            field(
                errors,
                &format!("event_types[{index}]"),
                EventTypePattern::parse(pattern),
            )
        })
        .collect();
    if errors.len() > before {
        return None;
    }
    field(errors, "event_types", EventTypePatterns::new(patterns))
}

fn limit(raw: Option<&str>) -> Result<i64, ApiError> {
    let Some(raw) = raw else { return Ok(50) };
    raw.parse::<i64>()
        .ok()
        .filter(|limit| (1..=200).contains(limit))
        .ok_or_else(|| ApiError::BadRequest(vec![FieldError::new("limit", "must be 1 to 200")]))
}

/// An id that is not a UUID names no webhook.
fn webhook_id(raw: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| ApiError::NotFound("webhook"))
}
