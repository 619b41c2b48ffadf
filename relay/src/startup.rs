use std::sync::Arc;

use infra::broker::BrokerLink;
use infra::health::{self, Readiness};
use infra::process::RunningProcess;
use infra::shutdown::Shutdown;

use crate::settings::StandaloneSettings;

/// The `relay` process: the relay task and the health server. Stopped, it
/// stops publishing; the lock is released with its connection, so a waiting
/// relay takes over.
pub struct Application;

impl Application {
    pub async fn build(settings: StandaloneSettings) -> anyhow::Result<RunningProcess> {
        let pool = infra::db::open(&settings.common).await?;
        infra::metrics::install();
        crate::metrics::register();
        let shutdown = Shutdown::default();
        let broker = Arc::new(BrokerLink::new(settings.common.amqp_url.clone()));
        let relay_settings = settings.relay.settings()?;
        let signer = relay_settings.seal.health.clone();
        let relay = tokio::spawn(crate::run(
            pool.clone(),
            broker.clone(),
            settings.common.topology(),
            relay_settings,
            shutdown.clone(),
        ));
        let readiness = Readiness::new(pool, broker)
            .with_key_file(
                health::AUDIT_SIGNING_KEY,
                settings.relay.audit_signing_key_file.clone(),
            )
            .with_signer(signer);
        let (port, server) = health::serve_on(&settings.relay_addr, readiness)?;
        Ok(RunningProcess::new(port, server, vec![relay], shutdown))
    }
}
