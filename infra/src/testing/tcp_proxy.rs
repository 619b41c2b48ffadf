//! A TCP proxy a test owns, between a service and PostgreSQL or RabbitMQ:
//! `cut` closes every connection through it and refuses new ones (its port
//! is closed), `restore` listens on the same port again. `lose_backend`
//! plays a proxy whose backend is down (what HAProxy, PgBouncer or a cloud
//! SQL proxy does): it keeps accepting, answers each new connection with
//! some bytes and closes it; `find_backend` forwards again.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// What a connection accepted while the backend is lost receives before
/// it is closed; `None` while the backend is there.
type LostBackend = Arc<Mutex<Option<&'static [u8]>>>;

pub struct TcpProxy {
    port: u16,
    upstream: SocketAddr,
    accepting: Mutex<Option<JoinHandle<()>>>,
    /// One task per connection through the proxy.
    forwarding: Arc<Mutex<Vec<JoinHandle<()>>>>,
    lost: LostBackend,
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
            accepting: Mutex::default(),
            forwarding: Arc::default(),
            lost: Arc::default(),
        };
        proxy.accept_on(listener);
        proxy
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Drops every connection through the proxy and stops listening.
    pub fn cut(&self) {
        if let Some(accepting) = self.accepting.lock().expect("proxy listener").take() {
            accepting.abort();
        }
        self.drop_connections();
    }

    fn drop_connections(&self) {
        for task in self.forwarding.lock().expect("proxy tasks").drain(..) {
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

    /// Drops every connection and keeps listening, but answers each new one
    /// with `answer` and closes it, as a proxy whose backend is down.
    pub fn lose_backend(&self, answer: &'static [u8]) {
        *self.lost.lock().expect("proxy mode") = Some(answer);
        self.drop_connections();
    }

    /// Forwards new connections to the backend again.
    pub fn find_backend(&self) {
        *self.lost.lock().expect("proxy mode") = None;
    }

    fn accept_on(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let forwarding = self.forwarding.clone();
        let lost = self.lost.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let answer = *lost.lock().expect("proxy mode");
                let forward = tokio::spawn(forward(client, upstream, answer));
                forwarding.lock().expect("proxy tasks").push(forward);
            }
        });
        *self.accepting.lock().expect("proxy listener") = Some(accepting);
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, lost: Option<&'static [u8]>) {
    if let Some(answer) = lost {
        let _ = client.write_all(answer).await;
        let _ = client.shutdown().await;
        return;
    }
    if let Ok(mut server) = TcpStream::connect(upstream).await {
        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.cut();
    }
}
