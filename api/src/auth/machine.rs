//! Machine clients as callers: an API key sent as `Authorization: Bearer`,
//! or a token the client-credentials grant issued to one. Either way the
//! key is checked against the event store's tables on every request
//! ([`app::service_accounts::authentication`]), so a revoked key, or a
//! disabled account, is refused by every process at once.

use std::collections::BTreeSet;

use actix_web::{web, HttpRequest};
use app::service_accounts::authentication::{Machine, MachineAuthentication};
use app::tokens::AccessClaims;
use app::AppError;
use domain::Permission;

use super::principal::Principal;
use crate::extract::RequestContext;
use crate::problem::ApiError;

/// The caller `key` (a whole API key) authenticates; any key that does not
/// work now is refused as any other bad bearer credential is.
pub async fn with_key(req: &HttpRequest, key: &str) -> Result<Principal, ApiError> {
    let context = RequestContext::of(req);
    match authentication(req)?.with_key(&context, key).await {
        Ok(machine) => Ok(principal(machine, None)),
        Err(AppError::InvalidCredentials) => Err(ApiError::InvalidToken),
        Err(other) => Err(other.into()),
    }
}

/// The caller of a token granted to a key, while the key still works;
/// `None` for a token that is neither a person's nor a machine's.
pub async fn with_token(
    req: &HttpRequest,
    claims: &AccessClaims,
) -> Result<Option<Principal>, ApiError> {
    let Some(key_id) = claims.client_id else {
        return Ok(None);
    };
    let context = RequestContext::of(req);
    let machine = authentication(req)?
        .with_token(&context, claims.sub, key_id)
        .await?;
    let granted: BTreeSet<Permission> = claims
        .scope
        .as_deref()
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|name| Permission::parse(name).ok())
        .collect();
    Ok(machine.map(|machine| principal(machine, Some(&granted))))
}

fn principal(machine: Machine, granted: Option<&BTreeSet<Permission>>) -> Principal {
    tracing::Span::current().record(
        "user_id",
        tracing::field::display(machine.service_account_id),
    );
    let permissions = match granted {
        Some(granted) => machine.permissions.intersection(granted).copied().collect(),
        None => machine.permissions,
    };
    Principal {
        user_id: machine.service_account_id,
        permissions,
        session: None,
        api_key_id: Some(machine.key_id),
    }
}

fn authentication(req: &HttpRequest) -> Result<&MachineAuthentication, ApiError> {
    req.app_data::<web::Data<MachineAuthentication>>()
        .map(|data| data.get_ref())
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("MachineAuthentication not configured")))
}
