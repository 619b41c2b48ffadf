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

use crate::projection::ReadModels;
use crate::settings::ProjectorSettings;

/// The running projector: the consumer task plus the health server.
pub struct Application {
    port: u16,
    server: Server,
    consumer: JoinHandle<()>,
    shutdown: Shutdown,
}

impl Application {
    pub async fn build(settings: ProjectorSettings) -> anyhow::Result<Self> {
        let pool = connect(&settings).await?;
        Self::build_with_pool(settings, pool).await
    }

    pub async fn build_with_pool(
        settings: ProjectorSettings,
        pool: PgPool,
    ) -> anyhow::Result<Self> {
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(&settings.common.amqp_url));
        let consumer = tokio::spawn(consume(
            pool.clone(),
            broker.clone(),
            settings.clone(),
            shutdown.clone(),
        ));
        let listener = TcpListener::bind(&settings.projector_addr)?;
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
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Runs until SIGINT/SIGTERM; then finishes the batch in hand and stops.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.shutdown.trigger();
        let _ = self.consumer.await;
        served
    }
}

pub async fn connect(settings: &ProjectorSettings) -> anyhow::Result<PgPool> {
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
    settings: ProjectorSettings,
    shutdown: Shutdown,
) {
    let read_models = ReadModels::new(pool);
    while !shutdown.is_triggered() {
        if let Err(error) = consume_once(&read_models, &broker, &settings, &shutdown).await {
            tracing::error!(%error, "consumer stopped; reconnecting");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.wait() => {}
            }
        }
    }
}

async fn consume_once(
    read_models: &ReadModels,
    broker: &BrokerLink,
    settings: &ProjectorSettings,
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
        read_models,
        &settings.consumer_options(),
        shutdown.subscribe(),
    )
    .await?;
    Ok(())
}
