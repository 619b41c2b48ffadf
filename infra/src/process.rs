//! A running process of the service (api, relay, projector, worker): its
//! HTTP server, the background tasks it runs, and the shutdown they share.

use actix_web::dev::Server;
use tokio::task::JoinHandle;

use crate::shutdown::Shutdown;

pub struct RunningProcess {
    port: u16,
    server: Server,
    tasks: Vec<JoinHandle<()>>,
    shutdown: Shutdown,
}

impl RunningProcess {
    /// `tasks` must stop once `shutdown` is triggered.
    pub fn new(port: u16, server: Server, tasks: Vec<JoinHandle<()>>, shutdown: Shutdown) -> Self {
        Self {
            port,
            server,
            tasks,
            shutdown,
        }
    }

    /// The port the server listens on (the settings may have asked for 0).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGINT/SIGTERM or a stop through the server handle, then
    /// triggers the shutdown and waits for the tasks to finish what they hold.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let served = self.server.await;
        self.shutdown.trigger();
        for task in self.tasks {
            let _ = task.await;
        }
        served
    }
}
