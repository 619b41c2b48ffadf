use std::sync::Arc;

use infra::broker::BrokerLink;
use infra::consuming::consume_until_shutdown;
use infra::health::{self, Readiness};
use infra::process::RunningProcess;
use infra::shutdown::Shutdown;
use sqlx::PgPool;

use crate::projection::ReadModels;
use crate::settings::ProjectorSettings;

/// The projector: the consumer task plus the health server. Stopped, it
/// finishes the batch in hand.
pub struct Application;

impl Application {
    pub async fn build(settings: ProjectorSettings) -> anyhow::Result<RunningProcess> {
        let pool = infra::db::open(&settings.common).await?;
        Self::build_with_pool(settings, pool).await
    }

    pub async fn build_with_pool(
        settings: ProjectorSettings,
        pool: PgPool,
    ) -> anyhow::Result<RunningProcess> {
        infra::metrics::install();
        crate::metrics::register();
        let checkpoint = crate::projection::CHECKPOINT.load(&pool).await?;
        crate::metrics::record_checkpoint(checkpoint.global_position);
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(settings.common.amqp_url.clone()));
        let consumer = tokio::spawn(consume_until_shutdown(
            ReadModels::new(pool.clone()),
            broker.clone(),
            settings.consumption(),
            shutdown.clone(),
        ));
        let (port, server) =
            health::serve_on(&settings.projector_addr, Readiness::new(pool, broker))?;
        Ok(RunningProcess::new(port, server, vec![consumer], shutdown))
    }
}
