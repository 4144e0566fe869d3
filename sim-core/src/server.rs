//! Turning a service's `Router` into a running server.
//!
//! Every service is served the same way: HTTPS with the development certificate (plain
//! HTTP only for the managed-identity endpoint, as Azure's is), a request id on every
//! response, one access-log line per request, and graceful shutdown. Port 0 is supported
//! and the bound address is reported, which is how tests start services in-process.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::HeaderValue;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum_server::Handle;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::Error;
use crate::tls::TlsMaterial;

/// The id of the current request, available to handlers as an extension and returned as
/// `x-ms-request-id` (Entra also uses it as the `trace_id` of its errors).
#[derive(Clone, Copy, Debug)]
pub struct RequestId(pub Uuid);

pub struct ServeConfig {
    /// Service name used in logs.
    pub name: &'static str,
    pub bind: IpAddr,
    /// 0 picks a free port.
    pub port: u16,
    /// `None` serves plain HTTP (only the managed-identity endpoint does).
    pub tls: Option<Arc<TlsMaterial>>,
}

/// A server that is accepting connections.
pub struct RunningServer {
    pub name: &'static str,
    pub addr: SocketAddr,
    pub tls: bool,
    handle: Handle<SocketAddr>,
    task: JoinHandle<std::io::Result<()>>,
}

impl RunningServer {
    /// Base URL, e.g. `https://localhost:10010` (loopback binds are named `localhost`, so
    /// the URL matches the certificate and the docs).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        let host = if self.addr.ip().is_loopback() || self.addr.ip().is_unspecified() {
            "localhost".to_string()
        } else if self.addr.is_ipv6() {
            format!("[{}]", self.addr.ip())
        } else {
            self.addr.ip().to_string()
        };
        format!("{scheme}://{host}:{}", self.addr.port())
    }

    /// Stops accepting, lets in-flight requests finish (up to 10 s) and waits.
    pub async fn shutdown(self) {
        self.handle.graceful_shutdown(Some(Duration::from_secs(10)));
        let _ = self.task.await;
    }

    /// Waits until the server stops on its own (it only does on an I/O failure).
    pub async fn wait(self) -> std::io::Result<()> {
        self.task
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    }
}

/// Binds and starts serving `router`; returns once the listener is accepting.
pub async fn serve(router: Router, config: ServeConfig) -> Result<RunningServer, Error> {
    let addr = SocketAddr::new(config.bind, config.port);
    let listener =
        std::net::TcpListener::bind(addr).map_err(|source| Error::Bind { addr, source })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| Error::Bind { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| Error::Bind { addr, source })?;

    let app = router
        .layer(middleware::from_fn_with_state(config.name, request_context))
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = Handle::new();
    let task = match &config.tls {
        Some(tls) => {
            let rustls = tls.rustls_config().await?;
            let server = axum_server::from_tcp_rustls(listener, rustls)
                .map_err(|source| Error::Bind { addr, source })?
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
        None => {
            let server = axum_server::from_tcp(listener)
                .map_err(|source| Error::Bind { addr, source })?
                .handle(handle.clone());
            tokio::spawn(server.serve(app))
        }
    };
    tracing::info!(service = config.name, %bound, tls = config.tls.is_some(), "listening");
    Ok(RunningServer {
        name: config.name,
        addr: bound,
        tls: config.tls.is_some(),
        handle,
        task,
    })
}

/// Adds the request id and writes the access-log line.
async fn request_context(
    State(service): State<&'static str>,
    mut request: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let request_id = Uuid::new_v4();
    request.extensions_mut().insert(RequestId(request_id));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let value =
        HeaderValue::from_str(&request_id.to_string()).expect("uuid is a valid header value");
    response.headers_mut().insert("x-ms-request-id", value);
    tracing::info!(
        target: "azsim::access",
        service,
        %method,
        path,
        status = response.status().as_u16(),
        latency_us = started.elapsed().as_micros() as u64,
        request_id = %request_id,
    );
    response
}

/// Log output format (`--log-format`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides the default `info`.
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler can be installed");
    tokio::select! {
        _ = ctrl_c => {},
        _ = term.recv() => {},
    }
    tracing::info!("shutdown requested");
}
