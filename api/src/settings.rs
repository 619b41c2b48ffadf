use app::service_accounts::KeyPolicy;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use actix_web::http::header::{HeaderValue, InvalidHeaderValue};

use crate::cors::Origin;
use crate::routes::audit::FilterQuery;
use app::command_rate::{CommandQuota, CommandRate};
use app::failed_logins::AddressPolicy;
use clap::{Args, Parser, Subcommand};
use infra::settings::CommonSettings;

/// The identity service's HTTP API and outbox relay.
#[derive(Parser, Debug)]
#[command(name = "api", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,

    #[command(flatten)]
    pub settings: ApiSettings,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the HTTP API and run the outbox relay (the default).
    Serve,
    /// Apply the database migrations and exit.
    Migrate,
    /// Administrative tasks run by an operator.
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
    /// What auditors run from a shell, against the database.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Write the event log (or the events the filters select) to a file as
    /// NDJSON, in the format of `GET /v1/audit/export`, with a progress bar
    /// on a terminal and a summary at the end.
    Export {
        /// The file to write; written as FILE.partial and renamed when complete.
        #[arg(long)]
        output: PathBuf,
        #[command(flatten)]
        filters: FilterQuery,
    },
    /// Recompute every event's hash, seal and link and every signed
    /// checkpoint, from the database or (with --export) from an export file
    /// alone; prints the report as JSON and exits 1 if anything is broken.
    Verify {
        /// Verify this export file instead of the database (needs --public-key).
        #[arg(long, requires = "public_key")]
        export: Option<PathBuf>,
        /// The trusted public keys (SPKI PEM, as `api audit public-key` prints);
        /// default for the database: the keys it lists itself.
        #[arg(long)]
        public_key: Option<PathBuf>,
        /// Checkpoints kept outside the database (lines `{"checkpoint": {...}}`,
        /// as `api audit checkpoints` writes and the relay publishes): the
        /// verification fails unless the log holds each unchanged and extends it.
        #[arg(long)]
        trusted_checkpoints: Option<PathBuf>,
    },
    /// Let the checkpoint signer (which refuses a log that does not extend
    /// the checkpoint it last signed: `audit_signer` in /health/ready) go on
    /// from the newest checkpoint its key signed that the log still holds;
    /// recorded in the log as `audit_signer.log_acknowledged`. Run it where
    /// the relay's key file and state file are.
    Acknowledge {
        /// Why (1 to 500 characters), recorded with the acknowledgement.
        #[arg(long)]
        reason: String,
    },
    /// Write every signed checkpoint to a file (lines `{"checkpoint": {...}}`),
    /// to keep where the database's administrators cannot reach it and give
    /// to `api audit verify --trusted-checkpoints`.
    Checkpoints {
        /// The file to write; written as FILE.partial and renamed when complete.
        #[arg(long)]
        output: PathBuf,
    },
    /// Print the public halves of every checkpoint signing key (SPKI PEM),
    /// to keep out of band and give to `api audit verify --public-key`.
    PublicKey,
}

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Create the first administrator: the `admin` role with every
    /// permission, and a user holding it. Safe to run again: it creates only
    /// what is missing. The password is read from standard input (one line),
    /// or from `--password-file`.
    Bootstrap {
        /// The administrator's email.
        #[arg(long)]
        email: String,
        /// The administrator's display name (when the user is created).
        #[arg(long, default_value = "Administrator")]
        display_name: String,
        /// Read the password from this file instead of standard input.
        #[arg(long)]
        password_file: Option<PathBuf>,
    },
    /// Erase a person (as `POST /v1/users/{id}/erase`): records
    /// `user.erased`, revokes their sessions, frees their email and replaces
    /// their personal values in the event store by "[erased]". Never the last
    /// active user holding every permission. Safe to run again.
    EraseUser {
        /// The user's id.
        #[arg(long)]
        user_id: uuid::Uuid,
    },
    /// Service accounts, for provisioning scripts.
    ServiceAccount {
        #[command(subcommand)]
        command: ServiceAccountAdmin,
    },
}

#[derive(Subcommand, Debug)]
pub enum ServiceAccountAdmin {
    /// Create a service account holding the roles named and issue its
    /// first API key; prints one JSON object with `service_account_id`,
    /// `key_id`, `key` (shown this once), `scope` and `expires_at`.
    Create {
        /// 1 to 64 ASCII letters, digits, '-', '_', '.' and ':'.
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "")]
        description: String,
        /// A role to assign, by name; repeat for more.
        #[arg(long = "role")]
        roles: Vec<String>,
        /// A permission the key may use; repeat for more. Default: all the
        /// roles grant.
        #[arg(long = "scope")]
        scope: Vec<String>,
        /// The key's lifetime in days; default and maximum API_KEY_MAX_LIFETIME_DAYS.
        #[arg(long)]
        expires_in_days: Option<i64>,
    },
}

#[derive(Args, Clone, Debug)]
pub struct ApiSettings {
    #[command(flatten)]
    pub common: CommonSettings,

    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "API_ADDR", default_value = "127.0.0.1:8080")]
    pub api_addr: String,

    /// How long a query with `min_position` waits for the read model, in milliseconds.
    #[arg(long, env = "READ_YOUR_WRITES_TIMEOUT_MS", default_value_t = 5000)]
    pub read_your_writes_timeout_ms: u64,

    /// How long a request body may take to arrive, in milliseconds; then
    /// `408 request-timeout`.
    #[arg(long, env = "REQUEST_BODY_TIMEOUT_MS", default_value_t = 10_000)]
    pub request_body_timeout_ms: u64,

    /// How long a request line and headers may take to arrive, in
    /// milliseconds; then `408 request-timeout` and the connection closes.
    #[arg(long, env = "REQUEST_HEAD_TIMEOUT_MS", default_value_t = 5_000)]
    pub request_head_timeout_ms: u64,

    /// Run the outbox relay in this process (one process at a time is elected).
    #[arg(long, env = "RELAY_ENABLED", default_value_t = true, action = clap::ArgAction::Set)]
    pub relay_enabled: bool,

    #[command(flatten)]
    pub relay: relay::settings::RelayArgs,

    #[command(flatten)]
    pub audit_verification: AuditVerificationSettings,

    /// HTTP worker threads (default: one per core).
    #[arg(long, env = "API_WORKERS")]
    pub workers: Option<usize>,

    #[command(flatten)]
    pub auth: AuthSettings,

    #[command(flatten)]
    pub edge: EdgeSettings,

    #[command(flatten)]
    pub webhooks: WebhookSettings,
}

/// The standing verification behind `GET /v1/audit/verify`
/// (`app::integrity::background`): every api process runs the loop, one at
/// a time verifies.
#[derive(Args, Clone, Debug)]
pub struct AuditVerificationSettings {
    /// How often the background verifier continues from where it stopped,
    /// in milliseconds; 0 runs none in this process.
    #[arg(long, env = "AUDIT_VERIFY_INTERVAL_MS", default_value_t = 30_000)]
    pub audit_verify_interval_ms: u64,

    /// How often a full pass starts again from the first event, in hours.
    #[arg(long, env = "AUDIT_VERIFY_FULL_PASS_HOURS", default_value_t = 24, value_parser = clap::value_parser!(u32).range(1..))]
    pub audit_verify_full_pass_hours: u32,
}

impl AuditVerificationSettings {
    /// The verifier's settings, unless it is off in this process.
    pub fn verifier(&self) -> Option<app::integrity::VerifierSettings> {
        (self.audit_verify_interval_ms > 0).then(|| app::integrity::VerifierSettings {
            interval: Duration::from_millis(self.audit_verify_interval_ms),
            full_pass_every: chrono::TimeDelta::hours(i64::from(self.audit_verify_full_pass_hours)),
        })
    }
}

/// Registering webhooks and rotating their secrets.
#[derive(Args, Clone, Debug)]
pub struct WebhookSettings {
    #[command(flatten)]
    pub destinations: infra::webhooks::DestinationPolicy,

    /// How long a rotated-out signing secret keeps signing beside the new one, in seconds.
    #[arg(
        long,
        env = "WEBHOOK_SECRET_ROTATION_OVERLAP_SECONDS",
        default_value_t = 86_400
    )]
    pub webhook_secret_rotation_overlap_seconds: u32,

    /// The most webhooks that may exist at once, enabled or not; a
    /// registration beyond is refused (409 webhook-limit-reached).
    #[arg(
        long,
        env = "WEBHOOKS_MAX",
        default_value_t = 100,
        value_parser = clap::value_parser!(u32).range(1..=10_000)
    )]
    pub webhooks_max: u32,
}

impl WebhookSettings {
    pub fn rotation_overlap(&self) -> chrono::TimeDelta {
        chrono::TimeDelta::seconds(i64::from(self.webhook_secret_rotation_overlap_seconds))
    }

    pub fn policy(&self) -> app::webhooks::WebhookPolicy {
        app::webhooks::WebhookPolicy {
            destinations: self.destinations,
            rotation_overlap: self.rotation_overlap(),
            limit: domain::webhook::WebhookLimit::new(self.webhooks_max),
        }
    }
}

/// What browsers and reverse proxies in front of the api need.
#[derive(Args, Clone, Debug)]
pub struct EdgeSettings {
    /// `Strict-Transport-Security` sent on every response (empty: not sent).
    #[arg(
        long,
        env = "STRICT_TRANSPORT_SECURITY",
        default_value = "max-age=31536000; includeSubDomains",
        value_parser = header_value
    )]
    pub strict_transport_security: HeaderValue,

    /// Origins (`https://app.example.com`), comma-separated, whose pages may
    /// call the api with credentials (CORS) and send cookie-authenticated
    /// changes (CSRF check). None by default.
    #[arg(long, env = "CORS_ALLOWED_ORIGINS", value_delimiter = ',', value_parser = Origin::parse)]
    pub cors_allowed_origins: Vec<Origin>,

    /// Reverse proxies (addresses or CIDR ranges, comma-separated) whose
    /// `CLIENT_ADDRESS_HEADER` names the client. None by default.
    #[arg(long, env = "TRUSTED_PROXIES", value_delimiter = ',', value_parser = trusted_proxy)]
    pub trusted_proxies: Vec<ipnet::IpNet>,

    /// The one header a trusted proxy names the client in: `x-forwarded-for`
    /// or `forwarded` (RFC 7239). The other is ignored, whoever sent it.
    #[arg(
        long,
        env = "CLIENT_ADDRESS_HEADER",
        value_enum,
        default_value = "x-forwarded-for"
    )]
    pub client_address_header: crate::client_address::ClientAddressHeader,
}

/// An empty value is "not sent"; anything else must be a valid header value.
fn header_value(raw: &str) -> Result<HeaderValue, InvalidHeaderValue> {
    HeaderValue::from_str(raw.trim())
}

/// Permissions named in a setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PermissionList(pub std::collections::BTreeSet<domain::Permission>);

/// Names (`roles:write`) separated by commas, spaces around each ignored;
/// empty: none.
fn permission_list(raw: &str) -> Result<PermissionList, domain::ValidationError> {
    raw.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(domain::Permission::parse)
        .collect::<Result<_, _>>()
        .map(PermissionList)
}

/// `10.0.0.1` or `10.0.0.0/8` (IPv6 alike).
fn trusted_proxy(raw: &str) -> Result<ipnet::IpNet, ipnet::AddrParseError> {
    let raw = raw.trim();
    match raw.parse::<std::net::IpAddr>() {
        Ok(address) => Ok(ipnet::IpNet::from(address)),
        Err(_) => raw.parse(),
    }
}

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignupMode {
    /// Anyone may register.
    Open,
    /// Registering a user needs `users:write`.
    Closed,
}

#[derive(Args, Clone, Debug)]
pub struct AuthSettings {
    /// Who may call `POST /v1/users`.
    #[arg(long, env = "SIGNUP_MODE", value_enum, default_value = "closed")]
    pub signup_mode: SignupMode,

    /// Ed25519 private key (PKCS#8 PEM) that signs access tokens.
    #[arg(
        long,
        env = "JWT_SIGNING_KEY_FILE",
        default_value = ".keys/jwt-signing.pem"
    )]
    pub jwt_signing_key_file: PathBuf,

    /// Generate the signing key (and `<file>.pub`) on first start when the
    /// file is missing. For development; set to false in production.
    #[arg(long, env = "JWT_GENERATE_KEY", default_value_t = true, action = clap::ArgAction::Set)]
    pub jwt_generate_key: bool,

    /// 32 random bytes, base64, that encrypt authenticator apps' secrets
    /// (ChaCha20-Poly1305). Losing it disables every enrolled app: keep it
    /// out of the database's backups, and backed up itself.
    #[arg(
        long,
        env = "SECOND_FACTOR_KEY_FILE",
        default_value = ".keys/second-factor.key"
    )]
    pub second_factor_key_file: PathBuf,

    /// Generate that key on first start when the file is missing. For
    /// development; set to false in production.
    #[arg(long, env = "SECOND_FACTOR_GENERATE_KEY", default_value_t = true, action = clap::ArgAction::Set)]
    pub second_factor_generate_key: bool,

    /// The WebAuthn relying party's id: the registrable domain passkeys are
    /// bound to (`example.com`). Changing it later orphans every passkey.
    #[arg(long, env = "WEBAUTHN_RP_ID", default_value = "localhost")]
    pub webauthn_rp_id: String,

    /// Origins, comma-separated, of the pages that register and use
    /// passkeys (`https://app.example.com`); each must be the relying
    /// party's id or under it.
    #[arg(
        long,
        env = "WEBAUTHN_ORIGINS",
        value_delimiter = ',',
        default_value = "http://localhost:8080"
    )]
    pub webauthn_origins: Vec<url::Url>,

    /// Seconds a proved second factor lets a person run sensitive commands
    /// (changing a password or an email, granting, erasing, creating
    /// webhooks or API keys, removing a factor); after that they step up
    /// (`POST /v1/auth/step-up`). Applies to people who have a factor.
    #[arg(
        long,
        env = "STEP_UP_MAX_AGE_SECONDS",
        default_value_t = 900,
        value_parser = clap::value_parser!(u32).range(1..=86_400)
    )]
    pub step_up_max_age_seconds: u32,

    /// Permissions, comma-separated, whose holders must enrol a second
    /// factor: until they do, every other request answers
    /// `second-factor-enrolment-required` (empty: nobody must).
    #[arg(long, env = "SECOND_FACTOR_REQUIRED_FOR", default_value = "", value_parser = permission_list)]
    pub second_factor_required_for: PermissionList,

    /// Public keys (SPKI PEM), comma-separated, that still verify tokens but
    /// no longer sign: a retired key during rotation.
    #[arg(long, env = "JWT_RETIRED_KEY_FILES", value_delimiter = ',')]
    pub jwt_retired_key_files: Vec<PathBuf>,

    /// `iss` of issued tokens, required when verifying.
    #[arg(long, env = "JWT_ISSUER", default_value = "identity-service")]
    pub jwt_issuer: String,

    /// `aud` of issued tokens, required when verifying.
    #[arg(long, env = "JWT_AUDIENCE", default_value = "identity-api")]
    pub jwt_audience: String,

    /// Access token lifetime in seconds.
    #[arg(long, env = "ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900)]
    pub access_token_ttl_seconds: i64,

    /// Absolute session lifetime in seconds (refresh stops working after it).
    #[arg(long, env = "SESSION_LIFETIME_SECONDS", default_value_t = 30 * 24 * 3600)]
    pub session_lifetime_seconds: i64,

    /// A session not refreshed for this many seconds expires.
    #[arg(long, env = "SESSION_IDLE_TIMEOUT_SECONDS", default_value_t = 7 * 24 * 3600)]
    pub session_idle_timeout_seconds: i64,

    /// Seconds a rotated refresh token still refreshes the session instead of
    /// revoking it as stolen, for concurrent refreshes with one token (0: never).
    #[arg(
        long,
        env = "REFRESH_REUSE_INTERVAL_SECONDS",
        default_value_t = 10,
        value_parser = clap::value_parser!(u32).range(0..=MAX_REFRESH_REUSE_INTERVAL_SECONDS)
    )]
    pub refresh_reuse_interval_seconds: u32,

    /// Login and refresh requests per second allowed per client IP.
    #[arg(long, env = "AUTH_RATE_PER_SECOND", default_value_t = 10)]
    pub auth_rate_per_second: u64,

    /// Login and refresh requests a client IP may make in a burst.
    #[arg(long, env = "AUTH_RATE_BURST", default_value_t = 50)]
    pub auth_rate_burst: u32,

    /// Commands (requests that change state: any method but GET, HEAD and
    /// OPTIONS) per second one signed-in user may send, across every api
    /// process; a decimal (0.5: one every two seconds). Beyond the burst
    /// they are refused with 429 and `Retry-After`.
    #[arg(
        long,
        env = "COMMAND_RATE_PER_SECOND",
        default_value = "1",
        value_parser = CommandRate::parse
    )]
    pub command_rate_per_second: CommandRate,

    /// Commands one signed-in user may send in a burst.
    #[arg(
        long,
        env = "COMMAND_RATE_BURST",
        default_value_t = 20,
        value_parser = clap::value_parser!(u32).range(1..=MAX_COMMAND_BURST)
    )]
    pub command_rate_burst: u32,

    /// How often the api looks for failed logins that a stopped process
    /// stored but did not settle (count for the address, append
    /// `user.login_failed`), in milliseconds; a failure is taken over once
    /// its 5-minute lease has run out.
    #[arg(
        long,
        env = "FAILED_LOGIN_RECOVERY_INTERVAL_MS",
        default_value_t = 10_000
    )]
    pub failed_login_recovery_interval_ms: u64,

    /// Password hashes that may wait for a core beyond those running; more
    /// are refused with 503.
    #[arg(long, env = "PASSWORD_HASH_QUEUE", default_value_t = 64)]
    pub password_hash_queue: usize,

    /// Failed logins from one client address within the window, whatever
    /// the emails, that block the address.
    #[arg(long, env = "LOCKOUT_IP_THRESHOLD", default_value_t = AddressPolicy::DEFAULT.threshold, value_parser = clap::value_parser!(u32).range(1..))]
    pub lockout_ip_threshold: u32,

    /// Length of the window an address's failures are counted in, in seconds.
    #[arg(long, env = "LOCKOUT_WINDOW_SECONDS", default_value_t = AddressPolicy::DEFAULT.window.num_seconds(), value_parser = clap::value_parser!(i64).range(1..))]
    pub lockout_window_seconds: i64,

    /// How long an address stays blocked, in seconds, from the failure that triggered it.
    #[arg(long, env = "LOCKOUT_IP_BLOCK_SECONDS", default_value_t = AddressPolicy::DEFAULT.block.num_seconds(), value_parser = clap::value_parser!(i64).range(1..))]
    pub lockout_ip_block_seconds: i64,

    /// The longest an API key may live, in days; also the lifetime of a key
    /// issued without `expires_at`, and of the new key of a rotation.
    #[arg(long, env = "API_KEY_MAX_LIFETIME_DAYS", default_value_t = KeyPolicy::DEFAULT.max_lifetime.num_days(), value_parser = clap::value_parser!(i64).range(1..=3660))]
    pub api_key_max_lifetime_days: i64,
}

/// A bucket of a million commands is no limit; a larger one could hold
/// more time than a timestamp can (at the slowest rate, 1000 s each).
const MAX_COMMAND_BURST: i64 = 1_000_000;

/// A longer reuse interval would keep a stolen, rotated refresh token useful
/// for longer than any honest race takes (Okta allows at most 60 s too).
const MAX_REFRESH_REUSE_INTERVAL_SECONDS: i64 = 60;

/// Durations beyond ten years are taken as ten years: the deadlines are
/// stored as timestamps and must stay representable.
const MAX_SECONDS: i64 = 10 * 366 * 24 * 3600;

fn bounded(seconds: i64) -> chrono::Duration {
    chrono::Duration::seconds(seconds.clamp(1, MAX_SECONDS))
}

impl Cli {
    /// The command line, with the settings before or after the subcommand
    /// (`api --api-addr … serve` or `api serve --api-addr …`).
    pub fn parse_args() -> Self {
        infra::settings::parse_cli()
    }
}

impl AuthSettings {
    /// Who passkeys are registered with; its name is `JWT_ISSUER`, as
    /// authenticator apps show it.
    pub fn relying_party(&self) -> app::second_factors::passkeys::RelyingParty {
        app::second_factors::passkeys::RelyingParty {
            id: self.webauthn_rp_id.clone(),
            origins: self.webauthn_origins.clone(),
            name: self.jwt_issuer.clone(),
        }
    }

    pub fn second_factor_policy(&self) -> app::second_factors::policy::SecondFactorPolicy {
        app::second_factors::policy::SecondFactorPolicy {
            step_up_max_age: chrono::Duration::seconds(self.step_up_max_age_seconds.into()),
            required_for: self.second_factor_required_for.0.clone(),
        }
    }

    pub fn session_policy(&self) -> app::sign_in::SessionPolicy {
        app::sign_in::SessionPolicy {
            lifetime: bounded(self.session_lifetime_seconds),
            idle_timeout: bounded(self.session_idle_timeout_seconds),
            refresh_reuse_interval: chrono::Duration::seconds(
                self.refresh_reuse_interval_seconds.into(),
            ),
        }
    }

    pub fn failed_login_recovery_interval(&self) -> Duration {
        Duration::from_millis(self.failed_login_recovery_interval_ms)
    }

    pub fn key_policy(&self) -> KeyPolicy {
        KeyPolicy {
            max_lifetime: chrono::Duration::days(self.api_key_max_lifetime_days.clamp(1, 3660)),
        }
    }

    pub fn address_policy(&self) -> AddressPolicy {
        AddressPolicy {
            threshold: self.lockout_ip_threshold,
            window: bounded(self.lockout_window_seconds),
            block: bounded(self.lockout_ip_block_seconds),
        }
    }

    pub fn command_quota(&self) -> CommandQuota {
        // The parser refuses 0.
        let burst = NonZeroU32::new(self.command_rate_burst).unwrap_or(NonZeroU32::MIN);
        CommandQuota::new(self.command_rate_per_second, burst)
    }

    pub fn access_token_lifetime(&self) -> chrono::Duration {
        bounded(self.access_token_ttl_seconds)
    }
}

impl ApiSettings {
    pub fn read_your_writes_timeout(&self) -> Duration {
        Duration::from_millis(self.read_your_writes_timeout_ms)
    }

    pub fn request_body_timeout(&self) -> Duration {
        Duration::from_millis(self.request_body_timeout_ms)
    }

    pub fn request_head_timeout(&self) -> Duration {
        Duration::from_millis(self.request_head_timeout_ms)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    fn auth(args: &[&str]) -> Result<AuthSettings, clap::Error> {
        let args = std::iter::once("api").chain(args.iter().copied());
        Cli::try_parse_from(args).map(|cli| cli.settings.auth)
    }

    #[test]
    fn settings_come_before_or_after_the_subcommand() {
        let parse = |args: &[&str]| infra::settings::parse_cli_from::<Cli>(args.iter().copied());
        for args in [
            &["api", "serve", "--api-addr", "127.0.0.1:9"][..],
            &["api", "--api-addr", "127.0.0.1:9", "serve"],
        ] {
            let cli = parse(args).unwrap();
            assert!(matches!(cli.command, Some(Command::Serve)));
            assert_eq!(cli.settings.api_addr, "127.0.0.1:9");
        }
        let cli = parse(&[
            "api",
            "admin",
            "service-account",
            "create",
            "--name",
            "crm",
            "--api-key-max-lifetime-days",
            "7",
        ])
        .unwrap();
        assert_eq!(cli.settings.auth.api_key_max_lifetime_days, 7);
        let refused = parse(&["api", "admin", "erase-user", "--user-id", "42"]).unwrap_err();
        assert!(refused.to_string().contains("--user-id"), "{refused}");
    }

    #[test]
    fn the_permissions_that_require_a_second_factor_are_a_comma_separated_list() {
        let required = |args: &[&str]| auth(args).map(|a| a.second_factor_policy().required_for);
        assert!(required(&[]).unwrap().is_empty());
        assert!(required(&["--second-factor-required-for="])
            .unwrap()
            .is_empty());
        assert_eq!(
            required(&["--second-factor-required-for= roles:write, users:erase "]).unwrap(),
            [
                domain::Permission::RolesWrite,
                domain::Permission::UsersErase
            ]
            .into()
        );
        let refused = required(&["--second-factor-required-for=roles:fly"]).unwrap_err();
        assert!(refused.to_string().contains("roles:fly"), "{refused}");
    }

    #[test]
    fn the_refresh_reuse_interval_is_ten_seconds_unless_set_within_a_minute() {
        let policy = auth(&[]).unwrap().session_policy();
        assert_eq!(policy.refresh_reuse_interval, chrono::Duration::seconds(10));
        for seconds in [0, 60] {
            let policy = auth(&[&format!("--refresh-reuse-interval-seconds={seconds}")])
                .unwrap()
                .session_policy();
            assert_eq!(
                policy.refresh_reuse_interval,
                chrono::Duration::seconds(seconds)
            );
        }
        for refused in ["61", "-1", "ten"] {
            let arg = format!("--refresh-reuse-interval-seconds={refused}");
            assert!(auth(&[&arg]).is_err(), "{refused} accepted");
        }
    }

    #[test]
    fn the_command_limit_is_one_a_second_with_bursts_of_twenty_unless_set_within_bounds() {
        let defaults = auth(&[]).unwrap();
        let expected = CommandQuota::new(CommandRate::parse("1").unwrap(), 20.try_into().unwrap());
        assert_eq!(defaults.command_quota(), expected);
        let set = auth(&["--command-rate-per-second=0.5", "--command-rate-burst=3"]).unwrap();
        let expected = CommandQuota::new(CommandRate::parse("0.5").unwrap(), 3.try_into().unwrap());
        assert_eq!(set.command_quota(), expected);
        for refused in ["0", "-2", "NaN", "inf", "1e9", "fast", ""] {
            let arg = format!("--command-rate-per-second={refused}");
            assert!(auth(&[&arg]).is_err(), "rate {refused:?} accepted");
        }
        for refused in ["0", "-1", "1000001", "1.5", "many"] {
            let arg = format!("--command-rate-burst={refused}");
            assert!(auth(&[&arg]).is_err(), "burst {refused:?} accepted");
        }
    }
}
