//! What auditors read: one stream's events and an aggregate folded with the
//! write side's `apply` as of a moment (from the event store), the log
//! filtered and paged (from the `audit_log` read model), and exports (from
//! the event store, page by page). Every event is read through the
//! contract's decode; secrets never leave.

mod cursor;
mod export;
mod filter;
mod log;
mod sql;

pub use cursor::Order;
use cursor::StreamCursor;
pub use export::{
    AuditExport, EventIntegrity, ExportHeader, ExportedEvent, EXPORT_FORMAT, EXPORT_PAGE,
};
pub use filter::{page_limit, AuditFilter, FilterParams, DEFAULT_PAGE, MAX_PAGE};
pub use log::{AuditPage, ListRequest};

use std::collections::BTreeSet;

use bus::{Envelope, EventMetadata};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{
    AuditSigner, AuditSignerEvent, ContractEvent, Permission, Role, RoleEvent, SecondFactorEvent,
    SecondFactors, ServiceAccount, ServiceAccountEvent, Session, SessionEnd, SessionEvent, User,
    UserEvent, UserStatus, Webhook, WebhookEvent,
};
use infra::event_log;
use sqlx::PgPool;
use uuid::Uuid;

use crate::AppError;

/// One stored event as an auditor sees it.
#[derive(Debug, Clone)]
pub struct AuditedEvent {
    pub event_id: Uuid,
    pub event_type: String,
    /// The version of `payload`: an older stored version is upcast to the current one.
    pub event_version: String,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub sequence: i64,
    pub global_position: i64,
    /// With `global_position`, the event's place in publishing order.
    pub transaction_id: i64,
    pub recorded_at: DateTime<Utc>,
    /// As stored, with password and refresh-token hashes replaced.
    pub payload: serde_json::Value,
    pub metadata: EventMetadata,
    pub summary: String,
}

/// One page of a stream's history.
#[derive(Debug, Clone)]
pub struct HistoryPage {
    /// In sequence order.
    pub items: Vec<AuditedEvent>,
    /// Absent on the last page.
    pub next_cursor: Option<String>,
}

/// An aggregate's state after the event at `sequence` / `global_position`.
#[derive(Debug, Clone)]
pub struct StateAt {
    pub sequence: i64,
    pub global_position: i64,
    pub recorded_at: DateTime<Utc>,
    pub state: AggregateState,
}

/// The parts of an aggregate an auditor may see: no secret has a field here.
#[derive(Debug, Clone)]
pub enum AggregateState {
    User(UserState),
    Role(RoleState),
    Session(SessionState),
    Webhook(WebhookState),
    AuditSigner(AuditSignerState),
    ServiceAccount(ServiceAccountState),
    SecondFactors(SecondFactorsState),
}

/// A person's second factors by id, and how many recovery codes are left
/// (never a secret or a code's digest).
#[derive(Debug, Clone)]
pub struct SecondFactorsState {
    pub totp_factors: BTreeSet<Uuid>,
    pub recovery_codes_left: usize,
}

/// A service account and its keys (never a key's digest).
#[derive(Debug, Clone)]
pub struct ServiceAccountState {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub description: String,
    pub status: domain::ServiceAccountStatus,
    pub roles: BTreeSet<Uuid>,
    pub keys: Vec<(Uuid, domain::IssuedKey)>,
}

/// A checkpoint signing key's acknowledgements (`api audit acknowledge`).
#[derive(Debug, Clone)]
pub struct AuditSignerState {
    pub acknowledgements: u64,
    /// Where the last acknowledgement let the signer go on from (`None`:
    /// the start of the log, or none yet).
    pub adopted: Option<domain::SignedPoint>,
}

/// A webhook's subscription; its signing secrets are not part of it.
#[derive(Debug, Clone)]
pub struct WebhookState {
    pub id: Option<Uuid>,
    pub url: Option<String>,
    pub event_types: Vec<String>,
    pub description: String,
    pub enabled: bool,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct UserState {
    pub id: Option<Uuid>,
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub status: UserStatus,
    pub roles: BTreeSet<Uuid>,
    pub locked_until: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone)]
pub struct RoleState {
    pub id: Option<Uuid>,
    pub name: Option<String>,
    pub description: Option<String>,
    pub permissions: BTreeSet<Permission>,
    pub deleted: bool,
}

#[derive(Debug, Clone)]
pub struct SessionState {
    pub id: Option<Uuid>,
    pub user_id: Option<Uuid>,
    pub started_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_activity_at: Option<DateTime<Utc>>,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub ended: Option<SessionEnd>,
}

/// The aggregate types an auditor can name.
#[derive(Clone, Copy)]
enum Kind {
    User,
    Role,
    Session,
    Webhook,
    AuditSigner,
    ServiceAccount,
    SecondFactors,
}

impl Kind {
    fn parse(aggregate_type: &str) -> Result<Self, AppError> {
        match aggregate_type {
            User::TYPE => Ok(Self::User),
            Role::TYPE => Ok(Self::Role),
            Session::TYPE => Ok(Self::Session),
            Webhook::TYPE => Ok(Self::Webhook),
            AuditSigner::TYPE => Ok(Self::AuditSigner),
            ServiceAccount::TYPE => Ok(Self::ServiceAccount),
            SecondFactors::TYPE => Ok(Self::SecondFactors),
            other => Err(AppError::UnknownAggregateType(other.to_owned())),
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::User => User::TYPE,
            Self::Role => Role::TYPE,
            Self::Session => Session::TYPE,
            Self::Webhook => Webhook::TYPE,
            Self::AuditSigner => AuditSigner::TYPE,
            Self::ServiceAccount => ServiceAccount::TYPE,
            Self::SecondFactors => SecondFactors::TYPE,
        }
    }
}

pub struct AuditQueries {
    pool: PgPool,
}

impl AuditQueries {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// One page of the stream's events, in sequence order, after `cursor`
    /// (a `next_cursor` this stream's history issued) or from the start, in
    /// one query of at most `limit + 2` rows. `NotFound` when the stream has
    /// no events.
    pub async fn history(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        cursor: Option<&str>,
        limit: i64,
    ) -> Result<HistoryPage, AppError> {
        let kind = Kind::parse(aggregate_type)?;
        let fingerprint = StreamCursor::fingerprint(kind.name(), aggregate_id);
        let after = cursor
            .map(|raw| StreamCursor::decode(raw, fingerprint))
            .transpose()?
            .map(|cursor| cursor.after_sequence);
        // The cursor's own event is read too: a cursor naming no event of
        // this stream was not issued for it.
        let (from, extra) = match after {
            Some(after) => (after, 2),
            None => (0, 1),
        };
        let mut envelopes =
            event_log::read_stream_page(&self.pool, kind.name(), aggregate_id, from, limit + extra)
                .await?;
        if let Some(after) = after {
            match envelopes.first() {
                Some(first) if first.sequence == after => {
                    envelopes.remove(0);
                }
                _ => return Err(cursor::NOT_ISSUED),
            }
        } else if envelopes.is_empty() {
            return Err(AppError::NotFound(kind.name()));
        }
        let more = envelopes.len() as i64 > limit;
        envelopes.truncate(limit as usize);
        let next_cursor = more.then(|| envelopes.last()).flatten().map(|last| {
            StreamCursor {
                after_sequence: last.sequence,
                fingerprint,
            }
            .encode()
        });
        Ok(HistoryPage {
            items: envelopes
                .into_iter()
                .map(audited)
                .collect::<Result<_, _>>()?,
            next_cursor,
        })
    }

    /// The aggregate folded from its events recorded at or before `as_of`
    /// (all of them without it), with the write side's `apply`. `NotFound`
    /// when it did not exist yet.
    pub async fn state(
        &self,
        aggregate_type: &str,
        aggregate_id: &str,
        as_of: Option<DateTime<Utc>>,
    ) -> Result<StateAt, AppError> {
        let kind = Kind::parse(aggregate_type)?;
        let mut envelopes = self.stream(kind, aggregate_id).await?;
        if let Some(as_of) = as_of {
            // A prefix of the stream: what an observer at `as_of` could have seen.
            let included = envelopes
                .iter()
                .take_while(|envelope| envelope.recorded_at <= as_of)
                .count();
            envelopes.truncate(included);
        }
        let Some(last) = envelopes.last() else {
            return Err(AppError::NotFound(kind.name()));
        };
        let (sequence, global_position, recorded_at) =
            (last.sequence, last.global_position, last.recorded_at);
        let state = match kind {
            Kind::User => {
                let user: User = fold(&envelopes)?;
                AggregateState::User(UserState {
                    id: user.id(),
                    email: user.email().map(|e| e.as_str().to_owned()),
                    display_name: user.display_name().map(|d| d.as_str().to_owned()),
                    status: user.status(),
                    roles: user.roles().clone(),
                    locked_until: user.locked_until(),
                })
            }
            Kind::Role => {
                let role: Role = fold(&envelopes)?;
                AggregateState::Role(RoleState {
                    id: role.id(),
                    name: role.name().map(|n| n.as_str().to_owned()),
                    description: role.description().map(|d| d.as_str().to_owned()),
                    permissions: role.permissions().clone(),
                    deleted: role.is_deleted(),
                })
            }
            Kind::Session => {
                let session: Session = fold(&envelopes)?;
                AggregateState::Session(SessionState {
                    id: session.id(),
                    user_id: session.user_id(),
                    started_at: session.started_at(),
                    expires_at: session.expires_at(),
                    last_activity_at: session.last_activity_at(),
                    ip: session.ip().map(str::to_owned),
                    user_agent: session.user_agent().map(str::to_owned),
                    ended: session.ended().copied(),
                })
            }
            Kind::Webhook => AggregateState::Webhook(webhook_state(&fold(&envelopes)?)),
            Kind::AuditSigner => {
                let signer: AuditSigner = fold(&envelopes)?;
                AggregateState::AuditSigner(AuditSignerState {
                    acknowledgements: signer.acknowledgements(),
                    adopted: signer.adopted().cloned(),
                })
            }
            Kind::ServiceAccount => {
                let account: ServiceAccount = fold(&envelopes)?;
                AggregateState::ServiceAccount(ServiceAccountState {
                    id: account.id(),
                    name: account.name().map(|n| n.as_str().to_owned()),
                    description: account.description().as_str().to_owned(),
                    status: account.status(),
                    roles: account.roles().clone(),
                    keys: account
                        .keys()
                        .iter()
                        .map(|(id, key)| (*id, key.clone()))
                        .collect(),
                })
            }
            Kind::SecondFactors => {
                let factors: SecondFactors = fold(&envelopes)?;
                AggregateState::SecondFactors(SecondFactorsState {
                    totp_factors: factors.totp_factors().clone(),
                    recovery_codes_left: factors.recovery_codes_left(),
                })
            }
        };
        Ok(StateAt {
            sequence,
            global_position,
            recorded_at,
            state,
        })
    }

    async fn stream(&self, kind: Kind, aggregate_id: &str) -> Result<Vec<Envelope>, AppError> {
        Ok(event_log::read_stream(&self.pool, kind.name(), aggregate_id, 0, i64::MAX).await?)
    }
}

/// The aggregate after applying every event, decoded through the contract.
fn fold<A>(envelopes: &[Envelope]) -> Result<A, AppError>
where
    A: Aggregate,
    A::Event: ContractEvent,
{
    let mut aggregate = A::default();
    for envelope in envelopes {
        aggregate.apply(event_log::decode(envelope)?);
    }
    Ok(aggregate)
}

fn webhook_state(webhook: &Webhook) -> WebhookState {
    WebhookState {
        id: webhook.id(),
        url: webhook.url().map(|url| url.as_str().to_owned()),
        event_types: webhook
            .event_types()
            .into_iter()
            .flat_map(|types| types.iter())
            .map(|pattern| pattern.as_str().to_owned())
            .collect(),
        description: webhook.description().as_str().to_owned(),
        enabled: webhook.is_enabled(),
        deleted: webhook.is_deleted(),
    }
}

fn audited(envelope: Envelope) -> Result<AuditedEvent, AppError> {
    let kind = Kind::parse(&envelope.aggregate_type)?;
    let summary = match kind {
        Kind::User => event_log::decode::<UserEvent>(&envelope)?.summary(),
        Kind::Role => event_log::decode::<RoleEvent>(&envelope)?.summary(),
        Kind::Session => event_log::decode::<SessionEvent>(&envelope)?.summary(),
        Kind::Webhook => event_log::decode::<WebhookEvent>(&envelope)?.summary(),
        Kind::AuditSigner => event_log::decode::<AuditSignerEvent>(&envelope)?.summary(),
        Kind::ServiceAccount => event_log::decode::<ServiceAccountEvent>(&envelope)?.summary(),
        Kind::SecondFactors => event_log::decode::<SecondFactorEvent>(&envelope)?.summary(),
    };
    let mut payload = envelope.payload;
    let version = domain::redact_event_payload(
        &envelope.aggregate_type,
        &envelope.event_type,
        &envelope.event_version,
        &mut payload,
    )?
    .map_or(envelope.event_version, str::to_owned);
    Ok(AuditedEvent {
        event_id: envelope.event_id,
        event_type: envelope.event_type,
        event_version: version,
        aggregate_type: envelope.aggregate_type,
        aggregate_id: envelope.aggregate_id,
        sequence: envelope.sequence,
        global_position: envelope.global_position,
        transaction_id: envelope.transaction_id,
        recorded_at: envelope.recorded_at,
        payload,
        metadata: envelope.metadata,
        summary,
    })
}
