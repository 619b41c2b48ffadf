//! A service in the test process, stopped for good when dropped.

use std::time::Duration;

/// A process's `Application` on a runtime of its own thread, so it runs in
/// parallel with the test and stops for good when dropped: dropping shuts
/// that runtime down, which ends its consumers and closes its broker
/// connection (unacked deliveries go back to the queue).
pub struct InProcess {
    pub port: u16,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl InProcess {
    /// `build` makes the application and returns its port and its run future.
    pub async fn start<F, Fut, Run>(name: &'static str, build: F) -> Self
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = anyhow::Result<(u16, Run)>>,
        Run: std::future::Future<Output = std::io::Result<()>>,
    {
        let (started_tx, started_rx) = tokio::sync::oneshot::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let (port, run) = match build().await {
                    Ok(built) => built,
                    Err(error) => {
                        let _ = started_tx.send(Err(error));
                        return;
                    }
                };
                let _ = started_tx.send(Ok(port));
                tokio::select! {
                    result = run => result.unwrap_or_else(|error| panic!("{name} failed: {error}")),
                    _ = stop_rx => {}
                }
            });
            runtime.shutdown_timeout(Duration::from_secs(5));
        });
        let port = started_rx
            .await
            .unwrap_or_else(|_| panic!("{name} thread"))
            .unwrap_or_else(|error| panic!("build the {name}: {error}"));
        Self {
            port,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }
}

impl Drop for InProcess {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
