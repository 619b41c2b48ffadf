//! The HTTP server: the app served by actix-server and actix-http directly,
//! configured as actix-web's `HttpServer` configures them, with one
//! difference: each connection is wrapped in [`ProblemAnswering`], so the
//! answers actix-http writes before any route runs are problems too.
//! (`HttpServer` takes no wrapper around its connections.)

use std::fmt;
use std::net::TcpListener;
use std::time::Duration;

use actix_http::{HttpService, Request, Response};
use actix_server::Server;
use actix_service::{fn_service, map_config, IntoServiceFactory, Service};
use actix_service::{ServiceFactory, ServiceFactoryExt};
use actix_web::body::MessageBody;
use actix_web::dev::AppConfig;
use tokio::net::TcpStream;

use crate::request_head_problems::{HeadProblems, ProblemAnswering};

/// How the connections are served.
pub struct ServerSettings {
    /// Worker threads; one per core when `None`.
    pub workers: Option<usize>,
    /// How long a request head may take to arrive; then `408`.
    pub head_timeout: Duration,
    pub problems: HeadProblems,
}

/// Serves `app` (called once per worker) on `listener`.
pub fn serve<F, I, S, B>(
    listener: TcpListener,
    app: F,
    settings: ServerSettings,
) -> std::io::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<actix_web::Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let local_addr = listener.local_addr()?;
    let mut builder = Server::build();
    if let Some(workers) = settings.workers {
        builder = builder.workers(workers);
    }
    let shutdown = builder.graceful_shutdown_signal();
    let ServerSettings {
        head_timeout,
        problems,
        ..
    } = settings;
    builder
        .listen("api", listener, move || {
            let shutdown = shutdown.clone();
            let problems = problems.clone();
            let http = HttpService::build()
                // Idle keep-alive connections close when the server stops.
                .graceful_shutdown_signal(move || {
                    let shutdown = shutdown.clone();
                    async move { shutdown.notified().await }
                })
                .client_request_timeout(head_timeout)
                // As `HttpServer` sets it: a closing connection gets 1 s.
                .client_disconnect_timeout(Duration::from_secs(1))
                .local_addr(local_addr)
                .h1(map_config(
                    app()
                        .into_factory()
                        .map_err(|error| error.into().error_response()),
                    // The app reads neither the host nor the address from
                    // it: `Host` and the peer address come with each request.
                    |_| AppConfig::default(),
                ));
            fn_service(move |stream: TcpStream| {
                let peer = stream.peer_addr().ok();
                let _ = stream.set_nodelay(true);
                let connection = ProblemAnswering::new(stream, problems.clone());
                async move { Ok::<_, actix_http::error::DispatchError>((connection, peer)) }
            })
            .and_then(http)
        })
        .map(|builder| builder.run())
}
