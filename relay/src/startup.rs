use std::sync::Arc;

use actix_web::dev::Server;
use infra::broker::BrokerLink;
use infra::health::{self, Readiness};
use infra::shutdown::Shutdown;
use tokio::task::JoinHandle;

use crate::settings::StandaloneSettings;

/// The `relay` process: the relay task and the health server.
pub struct Application {
    port: u16,
    server: Server,
    relay: JoinHandle<()>,
    shutdown: Shutdown,
}

impl Application {
    pub async fn build(settings: StandaloneSettings) -> anyhow::Result<Self> {
        let pool = infra::db::open(&settings.common).await?;
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(settings.common.amqp_url.clone()));
        let relay = tokio::spawn(crate::run(
            pool.clone(),
            broker.clone(),
            settings.common.topology(),
            settings.relay.settings(),
            shutdown.clone(),
        ));
        let (port, server) = health::serve_on(&settings.relay_addr, Readiness { pool, broker })?;
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

    /// Runs until SIGINT/SIGTERM, then stops publishing (the lock is
    /// released with its connection, so a waiting relay takes over).
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.shutdown.trigger();
        let _ = self.relay.await;
        served
    }
}
