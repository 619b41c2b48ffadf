//! Who is calling, checked in actix extractors before a handler runs: the
//! bearer token is verified, its session must still be active in the event
//! store (so a revocation is seen by every process at once), and the caller's
//! permissions come from the grants its commands' transactions wrote
//! (`role_grants`, `user_role_grants`), so a grant or a revocation too. A
//! command (any method but GET, HEAD and OPTIONS) is then charged to the
//! caller's command budget ([`app::command_rate`]), before any permission
//! is checked: every route that changes state authenticates here, so none
//! can forget the limit. Ending a session is the one exception
//! ([`Principal::identify`]).

use std::collections::BTreeSet;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;

use actix_web::http::{header, Method};
use actix_web::{dev::Payload, web, FromRequest, HttpRequest};
use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use domain::{Permission, Session, SessionEvent};
use sqlx::PgPool;
use uuid::Uuid;

use super::{cookies, csrf, machine};
use crate::problem::ApiError;
use app::api_key::ApiKey;
use app::command_rate::CommandRateLimit;
use app::second_factors::policy::{SecondFactorPolicy, StepUp};
use app::tokens::AccessTokens;

/// An authenticated caller: a person with an active session, or a service
/// account acting with one of its API keys (directly, or through a token
/// granted to the key).
#[derive(Debug, Clone)]
pub struct Principal {
    /// The user, or the service account.
    pub user_id: Uuid,
    pub permissions: BTreeSet<Permission>,
    /// A person's session; a machine has none.
    pub session: Option<ActiveSession>,
    /// The key a machine acts with.
    pub api_key_id: Option<Uuid>,
}

#[derive(Debug, Clone, Copy)]
pub struct ActiveSession {
    pub id: Uuid,
    /// When the session ends unless refreshed: the earlier of its absolute
    /// and idle deadlines.
    pub ends_at: DateTime<Utc>,
    /// Whether sensitive commands run now, or need a step-up first.
    pub step_up: StepUp,
    /// A permission the person holds that obliges them to enrol a second
    /// factor, which they have not (`SECOND_FACTOR_REQUIRED_FOR`).
    pub must_enrol_for: Option<Permission>,
}

impl Principal {
    pub fn has(&self, permission: Permission) -> bool {
        self.permissions.contains(&permission)
    }

    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.has(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(permission.as_str()))
        }
    }

    /// The caller as the use cases see it.
    pub fn actor(&self) -> app::power::Actor {
        app::power::Actor {
            user_id: self.user_id,
            permissions: self.permissions.clone(),
            api_key_id: self.api_key_id,
        }
    }

    /// Sensitive commands (see `STEP_UP_MAX_AGE_SECONDS`) need a person who
    /// has a second factor to have proved it recently. A machine has no
    /// second factor: its key is the whole of its proof.
    pub fn require_step_up(&self) -> Result<(), ApiError> {
        match self.session.map(|session| session.step_up) {
            Some(StepUp::Required { max_age }) => Err(ApiError::StepUpRequired {
                max_age_seconds: max_age.num_seconds(),
            }),
            Some(StepUp::Satisfied) | None => Ok(()),
        }
    }

    /// The caller's session: a machine, which has none, is told so (404).
    pub fn session(&self) -> Result<ActiveSession, ApiError> {
        self.session.ok_or(ApiError::NotFound("session"))
    }

    /// Acting on oneself is allowed; on anyone else it needs `permission`.
    pub fn require_self_or(&self, user_id: Uuid, permission: Permission) -> Result<(), ApiError> {
        if user_id == self.user_id {
            Ok(())
        } else {
            self.require(permission)
        }
    }

    /// The caller, with a command charged to their command budget. A
    /// person who must enrol a second factor may do only that.
    pub async fn authenticate(req: &HttpRequest) -> Result<Self, ApiError> {
        let principal = Self::identify(req).await?;
        if let Some(permission) = principal.session.and_then(|s| s.must_enrol_for) {
            if !enrolling(req, principal.user_id) {
                return Err(ApiError::SecondFactorEnrolmentRequired(permission.as_str()));
            }
        }
        if is_command(req.method()) {
            let limit = req
                .app_data::<web::Data<CommandRateLimit>>()
                .ok_or_else(|| {
                    ApiError::internal(anyhow::anyhow!("CommandRateLimit not configured"))
                })?;
            limit.admit(principal.user_id).await?;
        }
        Ok(principal)
    }

    /// The caller, charged nothing: for the commands that only end a
    /// session (logout, revocation). They write at most one event per
    /// session, and a thief spending a user's budget with a stolen token
    /// must not keep the user from ending the thief's session.
    pub async fn identify(req: &HttpRequest) -> Result<Self, ApiError> {
        let tokens = req
            .app_data::<web::Data<AccessTokens>>()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("AccessTokens not configured")))?;
        let pool = req
            .app_data::<web::Data<PgPool>>()
            .ok_or_else(|| ApiError::internal(anyhow::anyhow!("pool not configured")))?;
        let credential = Credential::of(req)?;
        let refused = credential.refusal();
        if let Credential::Bearer(key) = &credential {
            if ApiKey::claims_to_be(key) {
                return machine::with_key(req, key).await;
            }
        }
        let claims = tokens.verify(credential.token()).map_err(|error| {
            tracing::debug!(%error, "access token refused");
            refused()
        })?;
        let Some(session_id) = claims.sid else {
            return machine::with_token(req, &claims).await?.ok_or_else(refused);
        };
        let policy = req
            .app_data::<web::Data<SecondFactorPolicy>>()
            .ok_or_else(|| {
                ApiError::internal(anyhow::anyhow!("SecondFactorPolicy not configured"))
            })?;
        let standing = session_and_permissions(pool, session_id, claims.sub)
            .await
            .map_err(ApiError::internal)?;
        let Some(live) = live_until(standing.first, standing.last, claims.sub) else {
            tracing::debug!(%session_id, "access token of an ended session, or of another user's, refused");
            return Err(refused());
        };
        tracing::Span::current().record("user_id", tracing::field::display(claims.sub));
        let permissions: BTreeSet<Permission> = standing
            .permissions
            .iter()
            .filter_map(|name| Permission::parse(name).ok())
            .collect();
        let proved_at = live.second_factor_at.max(standing.verified_at);
        Ok(Self {
            user_id: claims.sub,
            session: Some(ActiveSession {
                id: session_id,
                ends_at: live.ends_at,
                step_up: policy.step_up(standing.enrolled, proved_at, Utc::now()),
                must_enrol_for: policy.enrolment_required_by(&permissions, standing.enrolled),
            }),
            permissions,
            api_key_id: None,
        })
    }
}

/// Whether the request only enrols the caller's own second factor (or
/// lists their factors, or reads who they are): what a person who must
/// enrol may still do.
fn enrolling(req: &HttpRequest, user_id: Uuid) -> bool {
    let Some(pattern) = req.match_pattern() else {
        return false;
    };
    if SELF_PATHS.contains(&pattern.as_str()) {
        return true;
    }
    let own = path_id(req, "user").is_ok_and(|id| id == user_id);
    own && ENROLMENT_PATHS.contains(&pattern.as_str())
}

/// The caller's own session and account, open to a person who must enrol.
const SELF_PATHS: &[&str] = &["/v1/auth/session", "/v1/users/me"];

/// The routes that enrol a second factor (see `routes::second_factors`).
pub const ENROLMENT_PATHS: &[&str] = &[
    "/v1/users/{id}/second-factors",
    "/v1/users/{id}/second-factors/totp",
    "/v1/users/{id}/second-factors/{factor_id}/confirm",
    "/v1/users/{id}/second-factors/passkeys",
    "/v1/users/{id}/second-factors/passkeys/{ceremony}",
];

fn is_command(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Whether the request carries an access token (a header or the session
/// cookie), valid or not.
pub fn carries_credentials(req: &HttpRequest) -> bool {
    req.headers().contains_key(header::AUTHORIZATION)
        || req.cookie(cookies::ACCESS_COOKIE).is_some()
}

/// How the access token came: `Authorization: Bearer`, or (without that
/// header) the session cookie, which must pass the CSRF check.
enum Credential {
    Bearer(String),
    Cookie(String),
}

impl Credential {
    fn of(req: &HttpRequest) -> Result<Self, ApiError> {
        if let Some(value) = req.headers().get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| ApiError::InvalidToken)?;
            let (scheme, token) = value.split_once(' ').unwrap_or((value, ""));
            return match scheme.eq_ignore_ascii_case("bearer") {
                true => Ok(Self::Bearer(token.trim().to_owned())),
                false => Err(ApiError::Unauthorized),
            };
        }
        let cookie = req
            .cookie(cookies::ACCESS_COOKIE)
            .ok_or(ApiError::Unauthorized)?;
        csrf::check(req)?;
        Ok(Self::Cookie(cookie.value().to_owned()))
    }

    fn token(&self) -> &str {
        match self {
            Self::Bearer(token) | Self::Cookie(token) => token,
        }
    }

    /// RFC 6750's `invalid_token` is for a bearer token that was sent.
    fn refusal(&self) -> fn() -> ApiError {
        match self {
            Self::Bearer(_) => || ApiError::InvalidToken,
            Self::Cookie(_) => || ApiError::SessionCookieRefused,
        }
    }
}

/// A stored event as `(event_type, event_version, payload)`.
type StoredEvent = (String, String, serde_json::Value);

/// What a request needs to know of a person's session.
struct SessionStanding {
    first: Option<StoredEvent>,
    last: Option<StoredEvent>,
    /// The permissions the user's roles grant, as of the last committed
    /// grant or revocation.
    permissions: Vec<String>,
    /// Whether the person has a second factor enabled.
    enrolled: bool,
    /// When the person last proved a second factor in this session.
    verified_at: Option<DateTime<Utc>>,
}

/// One round trip: the session's first and last events (liveness is then
/// decided by [`Session::is_live`]), the user's permissions and their
/// second factor's standing.
async fn session_and_permissions(
    pool: &PgPool,
    session_id: Uuid,
    user_id: Uuid,
) -> sqlx::Result<SessionStanding> {
    type Row = (
        Option<sqlx::types::Json<StoredEvent>>,
        Option<sqlx::types::Json<StoredEvent>>,
        Vec<String>,
        bool,
        Option<DateTime<Utc>>,
    );
    let (first, last, permissions, enrolled, verified_at): Row = sqlx::query_as(
        // Each end is one probe of the primary key, however long the stream.
        "SELECT (SELECT jsonb_build_array(event_type, event_version, payload) FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence LIMIT 1), \
                (SELECT jsonb_build_array(event_type, event_version, payload) FROM events \
                 WHERE aggregate_type = $1 AND aggregate_id = $2 ORDER BY sequence DESC LIMIT 1), \
         ARRAY(SELECT DISTINCT permission \
               FROM user_role_grants ur JOIN role_grants r USING (role_id) \
               CROSS JOIN LATERAL unnest(r.permissions) AS permission \
               WHERE ur.user_id = $3), \
         EXISTS (SELECT 1 FROM enabled_second_factors WHERE user_id = $3), \
         (SELECT verified_at FROM second_factor_verifications \
          WHERE session_id = $4 AND user_id = $3)",
    )
    .bind(Session::TYPE)
    .bind(session_id.to_string())
    .bind(user_id)
    .bind(session_id)
    .fetch_one(pool)
    .await?;
    Ok(SessionStanding {
        first: first.map(|json| json.0),
        last: last.map(|json| json.0),
        permissions,
        enrolled,
        verified_at,
    })
}

/// A live session's deadline, and when a second factor was proved at its start.
struct Live {
    ends_at: DateTime<Utc>,
    second_factor_at: Option<DateTime<Utc>>,
}

/// When the session whose first and last events these are ends, if it is
/// live now and belongs to `subject` (a token's `sid` counts only for its
/// own `sub`). An event that does not decode makes it not live.
fn live_until(
    first: Option<StoredEvent>,
    last: Option<StoredEvent>,
    subject: Uuid,
) -> Option<Live> {
    let decode = |(event_type, version, payload): StoredEvent| {
        domain::decode::<SessionEvent>(&event_type, &version, payload)
    };
    let Some(Ok(first)) = first.map(decode) else {
        return None;
    };
    let session = match last.map(decode).transpose() {
        Ok(last) => Session::from_first_and_last(first, last),
        Err(error) => {
            tracing::error!(error = %error, "a session event does not decode");
            return None;
        }
    };
    if session.user_id() != Some(subject) || !session.is_live(Utc::now()) {
        return None;
    }
    let ends_at = [session.expires_at(), session.idle_deadline()]
        .into_iter()
        .flatten()
        .min()?;
    Some(Live {
        ends_at,
        second_factor_at: session
            .started_at()
            .filter(|_| session.second_factor_used()),
    })
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Self, ApiError>>>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Self::authenticate(&req).await })
    }
}

/// The caller of a command that only ends a session, charged nothing (see
/// [`Principal::identify`]).
pub struct EndingSession(pub Principal);

impl FromRequest for EndingSession {
    type Error = ApiError;
    type Future = Authorizing<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move { Principal::identify(&req).await.map(Self) })
    }
}

/// A permission named at the type level, for [`Allowed`] and [`SelfOr`].
pub trait Needs {
    const PERMISSION: Permission;
}

macro_rules! needs {
    ($($name:ident => $permission:ident),* $(,)?) => {$(
        pub struct $name;
        impl Needs for $name {
            const PERMISSION: Permission = Permission::$permission;
        }
    )*};
}

needs! {
    ServiceAccountsRead => ServiceAccountsRead,
    ServiceAccountsWrite => ServiceAccountsWrite,
    UsersRead => UsersRead,
    UsersWrite => UsersWrite,
    RolesRead => RolesRead,
    RolesWrite => RolesWrite,
    SessionsRead => SessionsRead,
    SessionsRevoke => SessionsRevoke,
    AuditRead => AuditRead,
    WebhooksWrite => WebhooksWrite,
}

/// The future of an extractor that needs the caller.
pub type Authorizing<T> = Pin<Box<dyn Future<Output = Result<T, ApiError>>>>;

/// Authenticates the caller, then lets `authorize` decide with the caller
/// and the request: the body of every extractor that authorizes.
pub fn authenticated<T, Fut>(
    req: &HttpRequest,
    authorize: impl FnOnce(Principal, HttpRequest) -> Fut + 'static,
) -> Authorizing<T>
where
    Fut: Future<Output = Result<T, ApiError>> + 'static,
{
    let req = req.clone();
    Box::pin(async move {
        let principal = Principal::authenticate(&req).await?;
        authorize(principal, req).await
    })
}

/// The UUID in the path's `{id}`; one that is not a UUID names no `what` (404).
pub fn path_id(req: &HttpRequest, what: &'static str) -> Result<Uuid, ApiError> {
    req.match_info()
        .get("id")
        .and_then(|id| Uuid::parse_str(id).ok())
        .ok_or(ApiError::NotFound(what))
}

/// A caller holding `P`'s permission.
pub struct Allowed<P: Needs>(pub Principal, pub PhantomData<P>);

impl<P: Needs + 'static> FromRequest for Allowed<P> {
    type Error = ApiError;
    type Future = Authorizing<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        authenticated(req, |principal, _| async move {
            principal.require(P::PERMISSION)?;
            Ok(Self(principal, PhantomData))
        })
    }
}

/// A caller acting on the user named by the path's `{id}`: themselves, or
/// anyone when they hold `P`'s permission. An `{id}` that is not a UUID
/// names no user (404).
pub struct SelfOr<P: Needs> {
    pub principal: Principal,
    pub user_id: Uuid,
    _permission: PhantomData<P>,
}

impl<P: Needs + 'static> FromRequest for SelfOr<P> {
    type Error = ApiError;
    type Future = Authorizing<Self>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        authenticated(req, |principal, req| async move {
            let user_id = path_id(&req, "user")?;
            principal.require_self_or(user_id, P::PERMISSION)?;
            Ok(Self {
                principal,
                user_id,
                _permission: PhantomData,
            })
        })
    }
}
