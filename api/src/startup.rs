use std::net::TcpListener;
use std::sync::Arc;

use anyhow::Context;

use actix_web::dev::Server;
use actix_web::{middleware, web, App};
use infra::broker::BrokerLink;
use infra::health::{self, Readiness, SignerHealth};
use infra::process::RunningProcess;
use infra::shutdown::Shutdown;
use sqlx::PgPool;
use tracing_actix_web::TracingLogger;

use crate::client_address::{self, TrustedProxies};
use crate::correlation::{self, CorrelatedRootSpan};
use crate::cors::{self, AllowedOrigins};
use crate::extract::{BodyTimeout, MAX_BODY_BYTES};
use crate::freshness::Freshness;
use crate::rate_limit::{auth_rate_limit, AddressRateLimit};
use crate::request_head_problems::HeadProblems;
use crate::security_headers::{security_header_values, security_headers};
use crate::server::{serve, ServerSettings};
use crate::settings::ApiSettings;
use crate::{http_metrics, problem, routes, screening};
use app::command_rate::CommandRateLimit;
use app::failed_logins::FailedLogins;
use app::integrity::BackgroundVerifier;
use app::keys::SigningKeys;
use app::password::Passwords;
use app::roles::RoleCommands;
use app::second_factors::policy::SecondFactorPolicy;
use app::second_factors::secret_box::SecretBox;
use app::second_factors::SecondFactorService;
use app::service_accounts::authentication::MachineAuthentication;
use app::service_accounts::queries::ServiceAccountQueries;
use app::service_accounts::ServiceAccountCommands;
use app::sign_in::SignIn;
use app::tokens::AccessTokens;
use app::users::UserCommands;
use app::webhooks::{DeliveryQueries, WebhookCommands, WebhookQueries};

/// The api process: the HTTP server plus (unless disabled) the relay task
/// and the background audit verifier, which it stops once the server has
/// stopped.
pub struct Application;

impl Application {
    pub async fn build(settings: ApiSettings) -> anyhow::Result<RunningProcess> {
        let common = &settings.common;
        let pool = infra::db::open(common).await?;
        register_metrics(settings.relay_enabled);
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(common.amqp_url.clone()));
        let relay_settings = match settings.relay_enabled {
            true => Some(settings.relay.settings()?),
            false => None,
        };
        let signer = relay_settings
            .as_ref()
            .map(|relay| relay.seal.health.clone());
        let relay = relay_settings.map(|relay_settings| {
            tokio::spawn(relay::run(
                pool.clone(),
                broker.clone(),
                common.topology(),
                relay_settings,
                shutdown.clone(),
            ))
        });
        let listener = TcpListener::bind(&settings.api_addr)
            .with_context(|| format!("binding API_ADDR {:?}", settings.api_addr))?;
        let port = listener.local_addr()?.port();
        let services = Services::build(pool.clone(), &settings).await?;
        let recovery = tokio::spawn(FailedLogins::clone(&services.failed_logins).recover_until(
            settings.auth.failed_login_recovery_interval(),
            shutdown.clone(),
        ));
        let verifier = settings.audit_verification.verifier().map(|verifier| {
            tokio::spawn(
                BackgroundVerifier::new(pool.clone(), verifier, shutdown.clone())
                    .run_until_stopped(),
            )
        });
        let server = http_server(
            listener,
            pool,
            broker,
            services,
            (&settings, signer),
            shutdown.clone(),
        )?;
        Ok(RunningProcess::new(
            port,
            server,
            relay
                .into_iter()
                .chain(verifier)
                .chain([recovery])
                .collect(),
            shutdown,
        ))
    }
}

/// Describes this process's metrics and starts its counters at zero.
fn register_metrics(relay_enabled: bool) {
    infra::metrics::install();
    http_metrics::register();
    app::metrics::register();
    infra::command_metrics::register();
    if relay_enabled {
        relay::metrics::register();
    }
}

/// The request-independent parts the handlers share.
struct Services {
    tokens: web::Data<AccessTokens>,
    sign_in: web::Data<SignIn>,
    users: web::Data<UserCommands>,
    roles: web::Data<RoleCommands>,
    webhooks: web::Data<WebhookCommands>,
    webhook_queries: web::Data<WebhookQueries>,
    deliveries: web::Data<DeliveryQueries>,
    failed_logins: Arc<FailedLogins>,
    command_rate: web::Data<CommandRateLimit>,
    service_accounts: web::Data<ServiceAccountCommands>,
    service_account_queries: web::Data<ServiceAccountQueries>,
    machines: web::Data<MachineAuthentication>,
    second_factors: web::Data<SecondFactorService>,
    second_factor_policy: web::Data<SecondFactorPolicy>,
}

impl Services {
    async fn build(pool: PgPool, settings: &ApiSettings) -> anyhow::Result<Self> {
        let auth = &settings.auth;
        let keys = Arc::new(SigningKeys::load(
            &auth.jwt_signing_key_file,
            auth.jwt_generate_key,
            &auth.jwt_retired_key_files,
        )?);
        let tokens = Arc::new(AccessTokens::new(
            keys,
            auth.jwt_issuer.clone(),
            auth.jwt_audience.clone(),
            auth.access_token_lifetime(),
        ));
        let passwords = Passwords::new(auth.password_hash_queue).await?;
        let failed_logins = Arc::new(FailedLogins::new(pool.clone(), auth.address_policy()));
        let secrets = SecretBox::load(
            &auth.second_factor_key_file,
            auth.second_factor_generate_key,
        )?;
        let second_factors = Arc::new(
            SecondFactorService::new(
                pool.clone(),
                Arc::new(secrets),
                auth.jwt_issuer.clone(),
                &auth.relying_party(),
            )
            .context("WEBAUTHN_RP_ID and WEBAUTHN_ORIGINS")?,
        );
        let sign_in = SignIn::new(
            pool.clone(),
            passwords.clone(),
            tokens.clone(),
            auth.session_policy(),
            failed_logins.clone(),
            second_factors.clone(),
        );
        Ok(Self {
            tokens: web::Data::from(tokens),
            sign_in: web::Data::new(sign_in),
            users: web::Data::new(UserCommands::new(
                pool.clone(),
                passwords,
                failed_logins.clone(),
            )),
            roles: web::Data::new(RoleCommands::new(pool.clone())),
            webhooks: web::Data::new(WebhookCommands::new(
                pool.clone(),
                settings.webhooks.policy(),
            )),
            webhook_queries: web::Data::new(WebhookQueries::new(pool.clone())),
            deliveries: web::Data::new(DeliveryQueries::new(pool.clone())),
            service_accounts: web::Data::new(ServiceAccountCommands::new(
                pool.clone(),
                auth.key_policy(),
            )),
            service_account_queries: web::Data::new(ServiceAccountQueries::new(pool.clone())),
            machines: web::Data::new(MachineAuthentication::new(
                pool.clone(),
                failed_logins.clone(),
            )),
            second_factors: web::Data::from(second_factors),
            second_factor_policy: web::Data::new(auth.second_factor_policy()),
            failed_logins,
            command_rate: web::Data::new(CommandRateLimit::new(pool, auth.command_quota())),
        })
    }
}

/// The database, the broker, the JWT signing key and, with the relay, the
/// audit signing key.
fn readiness(pool: PgPool, broker: Arc<BrokerLink>, settings: &ApiSettings) -> Readiness {
    let jwt_key = settings.auth.jwt_signing_key_file.clone();
    let readiness = Readiness::new(pool, broker).with_key_file(health::SIGNING_KEY, jwt_key);
    match settings.relay_enabled {
        true => readiness.with_key_file(
            health::AUDIT_SIGNING_KEY,
            settings.relay.audit_signing_key_file.clone(),
        ),
        false => readiness,
    }
}

fn http_server(
    listener: TcpListener,
    pool: PgPool,
    broker: Arc<BrokerLink>,
    services: Services,
    (settings, signer): (&ApiSettings, Option<SignerHealth>),
    shutdown: Shutdown,
) -> anyhow::Result<Server> {
    let mut readiness = readiness(pool.clone(), broker, settings);
    if let Some(signer) = signer {
        readiness = readiness.with_signer(signer);
    }
    let readiness = web::Data::new(readiness);
    let freshness = web::Data::new(Freshness::start(
        pool.clone(),
        infra::checkpoints::READ_MODELS,
        settings.read_your_writes_timeout(),
        shutdown,
    ));
    let rate_limit = auth_rate_limit(
        settings.auth.auth_rate_per_second,
        settings.auth.auth_rate_burst,
    )?;
    let sign_up_rate_limit = web::Data::new(AddressRateLimit::sharing(&rate_limit));
    let signup_mode = web::Data::new(settings.auth.signup_mode);
    let body_timeout = BodyTimeout(settings.request_body_timeout());
    let pool = web::Data::new(pool);
    let edge = settings.edge.clone();
    let allowed_origins = web::Data::new(AllowedOrigins::new(edge.cors_allowed_origins.clone()));
    let trusted_proxies = web::Data::new(TrustedProxies::new(
        edge.trusted_proxies.clone(),
        edge.client_address_header,
    ));
    let server_settings = ServerSettings {
        workers: settings.workers,
        head_timeout: settings.request_head_timeout(),
        problems: HeadProblems::new(security_header_values(&edge)),
    };
    let app = move || {
        App::new()
            .wrap(middleware::from_fn(routes::head_as_get))
            .wrap(problem::bare_errors_as_problems())
            .wrap(middleware::from_fn(screening::refuse_control_characters))
            .wrap(middleware::from_fn(http_metrics::record))
            .wrap(TracingLogger::<CorrelatedRootSpan>::new())
            // Before the span is made: it must never see a secret.
            .wrap(middleware::from_fn(screening::redact_secret_query))
            // Before the rate limits and the handlers read it.
            .wrap(middleware::from_fn(client_address::resolve))
            // Registered late, so it runs early: the span sees the id.
            .wrap(middleware::from_fn(correlation::assign))
            // Outermost: a preflight is answered, and every response
            // (a refusal by any middleware too) gets these headers.
            .wrap(middleware::from_fn(cors::apply))
            .wrap(security_headers(&edge))
            .app_data(allowed_origins.clone())
            .app_data(trusted_proxies.clone())
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(body_timeout)
            .app_data(readiness.clone())
            .app_data(freshness.clone())
            .app_data(services.users.clone())
            .app_data(services.roles.clone())
            .app_data(services.webhooks.clone())
            .app_data(services.webhook_queries.clone())
            .app_data(services.deliveries.clone())
            .app_data(services.service_accounts.clone())
            .app_data(services.service_account_queries.clone())
            .app_data(services.machines.clone())
            .app_data(services.second_factors.clone())
            .app_data(services.second_factor_policy.clone())
            .app_data(services.sign_in.clone())
            .app_data(services.tokens.clone())
            .app_data(services.command_rate.clone())
            .app_data(signup_mode.clone())
            .app_data(sign_up_rate_limit.clone())
            .app_data(pool.clone())
            .configure(health::configure)
            .configure(|cfg| routes::configure(cfg, &rate_limit))
            .default_service(web::to(routes::not_found))
    };
    Ok(serve(listener, app, server_settings)?)
}
