use std::sync::Arc;

use infra::broker::BrokerLink;
use infra::consuming::consume_until_shutdown;
use infra::health::{self, Readiness};
use infra::process::RunningProcess;
use infra::shutdown::Shutdown;
use sqlx::PgPool;

use crate::expiry::Expiry;
use crate::lockout::Lockout;
use crate::settings::WorkerSettings;
use crate::webhooks::{Dispatcher, Enqueue};

/// The worker: the lockout consumer, the session expiry loop and the health
/// server. Stopped, it finishes the batch and the expiry scan in hand.
pub struct Application;

impl Application {
    pub async fn build(settings: WorkerSettings) -> anyhow::Result<RunningProcess> {
        let pool = infra::db::open(&settings.common).await?;
        Self::build_with_pool(settings, pool).await
    }

    pub async fn build_with_pool(
        settings: WorkerSettings,
        pool: PgPool,
    ) -> anyhow::Result<RunningProcess> {
        infra::metrics::install();
        crate::metrics::register();
        infra::command_metrics::register();
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(settings.common.amqp_url.clone()));
        let consumer = tokio::spawn(consume_until_shutdown(
            Lockout::new(pool.clone(), settings.lockout_policy()),
            broker.clone(),
            settings.consumption(),
            shutdown.clone(),
        ));
        let expiry = tokio::spawn(
            Expiry::new(pool.clone(), settings.session_expiry_batch)
                .run(settings.session_expiry_interval(), shutdown.clone()),
        );
        crate::webhooks::metrics::register();
        let enqueue = tokio::spawn(consume_until_shutdown(
            Enqueue::new(pool.clone()),
            broker.clone(),
            settings.webhook_consumption(),
            shutdown.clone(),
        ));
        let deliveries = tokio::spawn(
            Dispatcher::new(pool.clone(), settings.webhooks.clone()).run(shutdown.clone()),
        );
        let (port, server) = health::serve_on(&settings.worker_addr, Readiness::new(pool, broker))?;
        Ok(RunningProcess::new(
            port,
            server,
            vec![consumer, expiry, enqueue, deliveries],
            shutdown,
        ))
    }
}
