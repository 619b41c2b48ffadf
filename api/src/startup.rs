use std::net::TcpListener;
use std::sync::Arc;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpServer};
use infra::broker::BrokerLink;
use infra::health::{self, Readiness};
use infra::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tracing_actix_web::TracingLogger;

use crate::correlation::{self, CorrelatedRootSpan};
use crate::extract::MAX_BODY_BYTES;
use crate::freshness::Freshness;
use crate::settings::ApiSettings;
use crate::user_commands::UserCommands;
use crate::{http_metrics, relay, routes};

/// The running API: the HTTP server plus the relay task.
pub struct Application {
    port: u16,
    server: Server,
    relay: Option<JoinHandle<()>>,
    shutdown: Shutdown,
}

impl Application {
    pub async fn build(settings: ApiSettings) -> anyhow::Result<Self> {
        let common = &settings.common;
        let pool =
            infra::db::connect(&common.database_url, common.database_max_connections).await?;
        if common.migrate_on_start {
            infra::db::migrate(&pool).await?;
        }
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(&common.amqp_url));
        let relay = settings.relay_enabled.then(|| {
            tokio::spawn(relay::run(
                pool.clone(),
                broker.clone(),
                common.topology(),
                settings.relay(),
                shutdown.clone(),
            ))
        });
        let listener = TcpListener::bind(&settings.api_addr)?;
        let port = listener.local_addr()?.port();
        let server = http_server(listener, pool, broker, &settings, shutdown.clone())?;
        Ok(Self {
            port,
            server,
            relay,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM or a stop through the server handle,
    /// then stops the relay.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.shutdown.trigger();
        if let Some(relay) = self.relay {
            let _ = relay.await;
        }
        served
    }
}

fn http_server(
    listener: TcpListener,
    pool: PgPool,
    broker: Arc<BrokerLink>,
    settings: &ApiSettings,
    shutdown: Shutdown,
) -> anyhow::Result<Server> {
    let readiness = web::Data::new(Readiness {
        pool: pool.clone(),
        broker,
    });
    let freshness = web::Data::new(Freshness::start(
        pool.clone(),
        "users_view",
        settings.read_your_writes_timeout(),
        shutdown,
    ));
    let commands = web::Data::new(UserCommands::new(pool.clone()));
    let pool = web::Data::new(pool);
    let mut server = HttpServer::new(move || {
        App::new()
            .wrap(middleware::from_fn(http_metrics::record))
            .wrap(TracingLogger::<CorrelatedRootSpan>::new())
            // Registered last, so it runs first: the span sees the id.
            .wrap(middleware::from_fn(correlation::assign))
            .app_data(web::PayloadConfig::new(MAX_BODY_BYTES))
            .app_data(readiness.clone())
            .app_data(freshness.clone())
            .app_data(commands.clone())
            .app_data(pool.clone())
            .configure(health::configure)
            .configure(routes::configure)
            .default_service(web::to(routes::not_found))
    })
    .listen(listener)?;
    if let Some(workers) = settings.workers {
        server = server.workers(workers);
    }
    Ok(server.run())
}
