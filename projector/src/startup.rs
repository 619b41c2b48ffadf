use std::sync::Arc;

use actix_web::dev::Server;
use infra::broker::BrokerLink;
use infra::consuming::consume_until_shutdown;
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
        let pool = infra::db::open(&settings.common).await?;
        Self::build_with_pool(settings, pool).await
    }

    pub async fn build_with_pool(
        settings: ProjectorSettings,
        pool: PgPool,
    ) -> anyhow::Result<Self> {
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(settings.common.amqp_url.clone()));
        let consumer = tokio::spawn(consume_until_shutdown(
            ReadModels::new(pool.clone()),
            broker.clone(),
            settings.consumption(),
            shutdown.clone(),
        ));
        let (port, server) =
            health::serve_on(&settings.projector_addr, Readiness { pool, broker })?;
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
