use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{web, App, HttpServer};
use infra::broker::BrokerLink;
use infra::health::{self, Readiness};
use infra::shutdown::Shutdown;
use sqlx::PgPool;
use tokio::task::JoinHandle;

use crate::expiry::Expiry;
use crate::lockout::Lockout;
use crate::settings::WorkerSettings;

/// The running worker: the lockout consumer, the session expiry loop and
/// the health server.
pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<()>,
    expiry: JoinHandle<()>,
    shutdown: Shutdown,
}

impl Application {
    pub async fn build(settings: WorkerSettings) -> anyhow::Result<Self> {
        let pool = connect(&settings).await?;
        Self::build_with_pool(settings, pool).await
    }

    pub async fn build_with_pool(settings: WorkerSettings, pool: PgPool) -> anyhow::Result<Self> {
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(&settings.common.amqp_url));
        let consumer = tokio::spawn(consume(
            pool.clone(),
            broker.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
        let expiry = tokio::spawn(
            Expiry::new(pool.clone(), settings.session_expiry_batch)
                .run(settings.session_expiry_interval(), shutdown.clone()),
        );
        let listener = TcpListener::bind(&settings.worker_addr)?;
        let port = listener.local_addr()?.port();
        let readiness = web::Data::new(Readiness { pool, broker });
        let server = HttpServer::new(move || {
            App::new()
                .app_data(readiness.clone())
                .configure(health::configure)
        })
        .workers(1)
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            consumer,
            expiry,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGINT/SIGTERM; then finishes the batch and the expiry
    /// scan in hand and stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.shutdown.trigger();
        let _ = self.consumer.await;
        let _ = self.expiry.await;
        served
    }
}

pub async fn connect(settings: &WorkerSettings) -> anyhow::Result<PgPool> {
    let common = &settings.common;
    let pool = infra::db::connect(&common.database_url, common.database_max_connections).await?;
    if common.migrate_on_start {
        infra::db::migrate(&pool).await?;
    }
    Ok(pool)
}

/// Consumes until shutdown, reconnecting after any failure.
async fn consume(
    pool: PgPool,
    broker: Arc<BrokerLink>,
    settings: WorkerSettings,
    shutdown: Shutdown,
) {
    let lockout = Lockout::new(pool, settings.lockout_policy());
    while !shutdown.is_triggered() {
        if let Err(error) = consume_once(&lockout, &broker, &settings, &shutdown).await {
            tracing::error!(%error, "consumer stopped; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}

async fn consume_once(
    lockout: &Lockout,
    broker: &BrokerLink,
    settings: &WorkerSettings,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let connection = broker.connection().await?;
    let topology = settings.common.topology();
    let group = settings.consumer_group();
    let channel = connection.create_channel().await?;
    topology.declare_exchange(&channel).await?;
    topology.declare_group(&channel, &group).await?;
    channel.close(200, "declared".into()).await?;
    let queue = topology.queue_name(&group);
    tracing::info!(%queue, "consuming");
    bus::run_consumer(
        &connection,
        &queue,
        lockout,
        &settings.consumer_options(),
        shutdown.subscribe(),
    )
    .await?;
    Ok(())
}
