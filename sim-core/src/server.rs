//! Turning a service's `Router` into a running server.
//!
//! Every service is served the same way: HTTPS with the development certificate (plain
//! HTTP only for the managed-identity endpoint, as Azure's is), a request id on every
//! response, one access-log line per request, and graceful shutdown. Port 0 is supported
//! and the bound address is reported, which is how tests start services in-process.
//!
//! Every listener also defends itself: headers must arrive within [`READ_TIMEOUT`], a body
//! that stalls that long ends the request (408), a body over the service's limit is refused
//! with 413 in the service's error envelope before it is read, and a panic in a handler is a
//! logged 500 carrying the request id rather than a dropped connection. The `Date` header
//! reads the simulated clock, so clients that correct their clock skew from it (as the
//! agent does when it signs assertions) follow `azsim clock`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum_server::Handle;
use axum_server::accept::NoDelayAcceptor;
use http_body_util::BodyExt;
use tokio::task::JoinHandle;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::timeout::RequestBodyTimeoutLayer;
use uuid::Uuid;

use crate::tls::TlsMaterial;
use crate::{ApiError, Error, SimClock};

/// How long a client may take to send its headers, or pause while sending a body, and how
/// long a new connection may stay silent, before the server gives up on it.
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);

static READ_TIMEOUT_MS: std::sync::atomic::AtomicU64 =
    std::sync::atomic::AtomicU64::new(READ_TIMEOUT.as_millis() as u64);

/// Changes the read timeout of servers started afterwards in this process (tests shorten
/// it to observe it).
pub fn set_read_timeout(timeout: Duration) {
    READ_TIMEOUT_MS.store(
        timeout.as_millis() as u64,
        std::sync::atomic::Ordering::Relaxed,
    );
}

fn read_timeout() -> Duration {
    Duration::from_millis(READ_TIMEOUT_MS.load(std::sync::atomic::Ordering::Relaxed))
}

/// Bytes of an oversized body that are read and dropped before the 413, so that an HTTP/1.1
/// client still sending it reads the answer instead of a connection reset.
const DRAIN_LIMIT: u64 = 16 * 1024 * 1024;

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
    /// The simulated clock the `Date` header reads (real time when `None`).
    pub clock: Option<SimClock>,
    /// Largest request body. `Some`: larger bodies get 413 here, before any handler runs.
    /// `None`: the service limits each route itself (vault-server, after authentication).
    pub max_body: Option<usize>,
}

impl ServeConfig {
    /// HTTPS (or HTTP with `tls: None`) with the default 1 MiB body limit.
    pub fn new(
        name: &'static str,
        bind: IpAddr,
        port: u16,
        tls: Option<Arc<TlsMaterial>>,
        clock: SimClock,
    ) -> Self {
        ServeConfig {
            name,
            bind,
            port,
            tls,
            clock: Some(clock),
            max_body: Some(DEFAULT_MAX_BODY),
        }
    }

    pub fn max_body(mut self, limit: Option<usize>) -> Self {
        self.max_body = limit;
        self
    }
}

/// Request body limit of the services that take small JSON or form bodies.
pub const DEFAULT_MAX_BODY: usize = 1024 * 1024;

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
    let service = config.name;
    let bind_error = |source: std::io::Error| {
        let hint = match (source.kind(), port_flag(service)) {
            (std::io::ErrorKind::AddrInUse, Some(flag)) => {
                format!(" (the port is taken: stop what uses it, or pick another port with {flag})")
            }
            _ => String::new(),
        };
        Error::Bind {
            service,
            addr,
            hint,
            source,
        }
    };
    let listener = std::net::TcpListener::bind(addr).map_err(bind_error)?;
    listener.set_nonblocking(true).map_err(bind_error)?;
    let bound = listener.local_addr().map_err(bind_error)?;

    // Outermost first: request id, Date and access log; then panics become 500s; then the
    // body limit and the stalled-body timeout; then the handler, in a task of its own.
    let context = Context {
        service: config.name,
        clock: config.clock.clone(),
    };
    let app = router
        .layer(middleware::from_fn(run_to_completion))
        .layer(RequestBodyTimeoutLayer::new(read_timeout()))
        .layer(middleware::from_fn_with_state(config.max_body, body_limit))
        .layer(CatchPanicLayer::custom(panic_response))
        .layer(middleware::from_fn_with_state(context, request_context))
        .into_make_service_with_connect_info::<SocketAddr>();
    let handle = Handle::new();
    // Nagle off: a response's last TLS record otherwise waits for the client's delayed ACK
    // (up to 40 ms) whenever earlier data is unacknowledged; a full restore of the
    // benchmark set stalled that way often enough to cost 8-10 % of its time.
    let task = match &config.tls {
        Some(tls) => {
            let rustls = tls.rustls_config().await?;
            let mut server = axum_server::from_tcp_rustls(listener, rustls)
                .map_err(bind_error)?
                .map(|tls| tls.acceptor(NoDelayAcceptor::new()))
                .handle(handle.clone())
                .first_request_timeout(read_timeout());
            defend(server.http_builder());
            tokio::spawn(server.serve(app))
        }
        None => {
            let mut server = axum_server::from_tcp(listener)
                .map_err(bind_error)?
                .acceptor(NoDelayAcceptor::new())
                .handle(handle.clone())
                .first_request_timeout(read_timeout());
            defend(server.http_builder());
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

/// The `azsim up` flag that moves a service's port.
fn port_flag(service: &str) -> Option<&'static str> {
    Some(match service {
        "entra-sim" => "--entra-port",
        "entra-sim-mi" => "--mi-port",
        "keyvault-sim" => "--keyvault-port",
        "keyvault-sim-mgmt" => "--keyvault-mgmt-port",
        "vault-server" => "--vault-server-port",
        _ => return None,
    })
}

/// Header and idle timeouts on HTTP/1.1; keep-alive pings find dead HTTP/2 peers.
fn defend(builder: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>) {
    let timeout = read_timeout();
    builder.http1().header_read_timeout(timeout);
    builder
        .http2()
        .keep_alive_interval(Some(timeout))
        .keep_alive_timeout(timeout);
}

#[derive(Clone)]
struct Context {
    service: &'static str,
    clock: Option<SimClock>,
}

/// The envelope of the route: Entra's OAuth endpoints answer in the OAuth shape, every
/// other route in `{"error":{"code","message"}}`.
fn refusal(
    path: &str,
    status: StatusCode,
    code: &str,
    oauth_code: &str,
    message: String,
) -> Response {
    if path.contains("/oauth2/") {
        let body = serde_json::json!({
            "error": oauth_code,
            "error_description": message,
            "error_codes": [],
        });
        (status, axum::Json(body)).into_response()
    } else {
        ApiError::new(status, code, message).into_response()
    }
}

/// Refuses bodies over `limit` with 413 before any handler sees them (from
/// `Content-Length` when there is one, so `Expect: 100-continue` clients never send it).
async fn body_limit(State(limit): State<Option<usize>>, request: Request, next: Next) -> Response {
    let Some(limit) = limit else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    let too_large = |path: &str| {
        refusal(
            path,
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            "invalid_request",
            format!("The request body is larger than this service accepts ({limit} bytes)."),
        )
    };
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if let Some(length) = declared {
        if length > limit as u64 {
            let expects_continue = request
                .headers()
                .get(header::EXPECT)
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
            if !expects_continue && length <= limit as u64 + DRAIN_LIMIT {
                drain(request.into_body()).await;
            }
            return too_large(&path);
        }
        return next.run(request).await;
    }
    // No length given (chunked): read up to the limit here, then hand the bytes on.
    let (parts, body) = request.into_parts();
    let limited = http_body_util::Limited::new(body, limit);
    match limited.collect().await {
        Ok(collected) => {
            let request = Request::from_parts(parts, Body::from(collected.to_bytes()));
            next.run(request).await
        }
        Err(error) if error.is::<http_body_util::LengthLimitError>() => too_large(&path),
        Err(_) => refusal(
            &path,
            StatusCode::REQUEST_TIMEOUT,
            "RequestTimeout",
            "invalid_request",
            "The request body stopped arriving before it was complete.".into(),
        ),
    }
}

/// Reads and drops what is left of a body, up to [`DRAIN_LIMIT`] bytes.
async fn drain(body: Body) {
    let mut body = http_body_util::Limited::new(body, DRAIN_LIMIT as usize);
    while let Some(Ok(_)) = body.frame().await {}
}

/// Runs each request's handler in a task of its own. When a client goes away mid-request,
/// hyper drops the request's future; the handler's task still finishes, so no database
/// transaction is abandoned half-way through a query. (sqlx discards a connection whose
/// query was cancelled, and an in-memory database goes with its last connection: a
/// `kill -9` of an agent mid-upload emptied the test stack's database about one run in
/// ten.)
async fn run_to_completion(request: Request, next: Next) -> Response {
    use tracing::Instrument;
    match tokio::spawn(next.run(request).in_current_span()).await {
        Ok(response) => response,
        Err(e) if e.is_panic() => panic_response(e.into_panic()),
        Err(_) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "The service is shutting down; retry against the restarted service.",
        )
        .into_response(),
    }
}

/// A panic in a handler: logged (with the request id, by the access log) and answered 500.
fn panic_response(panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let detail = panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = detail, "a request handler panicked");
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "InternalServerError",
        "The service failed while handling this request; its log has the details under this response's x-ms-request-id.",
    )
    .into_response()
}

/// Adds the request id and the `Date` header, and writes the access-log line.
async fn request_context(
    State(context): State<Context>,
    mut request: Request,
    next: Next,
) -> Response {
    let service = context.service;
    let started = Instant::now();
    let request_id = Uuid::new_v4();
    request.extensions_mut().insert(RequestId(request_id));
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let mut response = next.run(request).await;
    let value =
        HeaderValue::from_str(&request_id.to_string()).expect("uuid is a valid header value");
    response.headers_mut().insert("x-ms-request-id", value);
    let now = context
        .clock
        .as_ref()
        .map(SimClock::now)
        .unwrap_or_else(chrono::Utc::now);
    let date = now.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
    if let Ok(date) = HeaderValue::from_str(&date) {
        response.headers_mut().insert(header::DATE, date);
    }
    if response.status() == StatusCode::INTERNAL_SERVER_ERROR {
        tracing::error!(service, %method, path, request_id = %request_id, "answered 500");
    }
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
