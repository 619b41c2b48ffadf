//! A TCP proxy a test owns, between a service and PostgreSQL or RabbitMQ:
//! `cut` closes every connection through it and refuses new ones (its port
//! is closed), `restore` listens on the same port again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub struct TcpProxy {
    port: u16,
    upstream: SocketAddr,
    tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl TcpProxy {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`.
    pub async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("the proxy's port").port();
        let proxy = Self {
            port,
            upstream,
            tasks: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every connection through the proxy and stops listening.
    pub fn cut(&self) {
        for task in self.tasks.lock().expect("proxy tasks").drain(..) {
            task.abort();
        }
    }

    /// Listens on the same port again.
    pub async fn restore(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port))
            .await
            .expect("bind the proxy's port again");
        self.accept_on(listener);
    }

    fn accept_on(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let tasks = self.tasks.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let forward = tokio::spawn(forward(client, upstream));
                tasks.lock().expect("proxy tasks").push(forward);
            }
        });
        self.tasks.lock().expect("proxy tasks").push(accepting);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr) {
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
