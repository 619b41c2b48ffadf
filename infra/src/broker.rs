use std::sync::{Arc, Mutex};

use lapin::Connection;
use secrecy::{ExposeSecret, SecretString};

/// A connection to RabbitMQ at `url`.
pub async fn connect(url: &SecretString) -> Result<Connection, bus::BusError> {
    bus::connect(url.expose_secret()).await
}

/// The process's connection to RabbitMQ, reopened on demand after a failure.
/// Readiness reports whether it is currently connected.
pub struct BrokerLink {
    url: SecretString,
    current: Mutex<Option<Arc<Connection>>>,
    connecting: tokio::sync::Mutex<()>,
}

impl BrokerLink {
    pub fn new(url: SecretString) -> Self {
        Self {
            url,
            current: Mutex::new(None),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// The open connection, connecting first if there is none or it died.
    pub async fn connection(&self) -> Result<Arc<Connection>, bus::BusError> {
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.open_connection() {
            return Ok(connection);
        }
        let connection = Arc::new(connect(&self.url).await?);
        *self.current.lock().expect("broker link poisoned") = Some(connection.clone());
        Ok(connection)
    }

    fn open_connection(&self) -> Option<Arc<Connection>> {
        self.current
            .lock()
            .expect("broker link poisoned")
            .as_ref()
            .filter(|connection| connection.status().connected())
            .cloned()
    }
}
