//! The HTTP listener: `/metrics` for Prometheus, `/healthz` (alive) and
//! `/readyz` (ready) for orchestrators, plus the client side of
//! `trailwatch healthcheck`, which container health checks run (the image
//! has no shell or curl).
//!
//! It binds 127.0.0.1 by default: metrics reveal which rules fire, so
//! exposing them beyond the host is the operator's explicit choice
//! (`[http] listen = "0.0.0.0:9808"` in a container).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use thiserror::Error;

use crate::checkpoint::{Store, now_ms};
use crate::metrics::Metrics;

/// The default listen address (and the one `healthcheck` calls).
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9808";

/// What `/healthz` and `/readyz` report, updated by the daemon loop.
pub struct Health {
    /// When the main loop last made progress (ms since the epoch).
    last_tick_ms: AtomicU64,
    /// No tick for this long means the loop is stuck: not alive.
    stall_after_ms: u64,
    /// Each source's last listing error, `None` once it succeeded.
    sources: Mutex<BTreeMap<String, Option<String>>>,
}

impl Health {
    pub fn new(stall_after: Duration) -> Health {
        Health {
            last_tick_ms: AtomicU64::new(now_ms()),
            stall_after_ms: stall_after.as_millis() as u64,
            sources: Mutex::new(BTreeMap::new()),
        }
    }

    /// The loop is making progress.
    pub fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::Relaxed);
    }

    /// A source was listed: `problem` is `None`, or why not (a bounded
    /// message, no secrets: the SDK's error text names the operation and
    /// the service's code).
    pub fn source(&self, name: &str, problem: Option<String>) {
        self.sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_owned(), problem);
    }

    /// What is wrong with the loop, if it has stopped making progress.
    fn stall(&self) -> Option<String> {
        let idle = now_ms().saturating_sub(self.last_tick_ms.load(Ordering::Relaxed));
        (idle > self.stall_after_ms).then(|| format!("main loop stalled for {} s", idle / 1000))
    }
}

/// Shared state of the handlers.
#[derive(Clone)]
struct App {
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    store: Arc<Store>,
}

/// The listener could not start, or a health check failed.
#[derive(Debug, Error)]
pub enum HttpError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{url}: {message}")]
    Check { url: String, message: String },
}

/// Bind `addr` (port 0 picks a free port) and serve until the runtime
/// stops. Returns the bound address.
pub async fn serve(
    addr: &str,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    store: Arc<Store>,
) -> Result<SocketAddr, HttpError> {
    let bind_err = |source| HttpError::Bind {
        addr: addr.to_owned(),
        source,
    };
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(bind_err)?;
    let local = listener.local_addr().map_err(bind_err)?;
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(App {
            metrics,
            health,
            store,
        });
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics listener stopped: {e}");
        }
    });
    Ok(local)
}

async fn metrics_handler(State(app): State<App>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        app.metrics.render(),
    )
}

async fn healthz(State(app): State<App>) -> impl IntoResponse {
    match app.health.stall() {
        None => (StatusCode::OK, "ok\n".to_owned()),
        Some(e) => (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}

/// Ready: alive, the store takes a write, and every source's last listing
/// succeeded. The body lists each problem.
async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let mut problems = Vec::new();
    problems.extend(app.health.stall());
    let store = Arc::clone(&app.store);
    match tokio::task::spawn_blocking(move || store.probe()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("state store not writable: {e}")),
        Err(e) => problems.push(format!("state store probe failed: {e}")),
    }
    for (name, err) in app
        .health
        .sources
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
    {
        if let Some(e) = err {
            problems.push(format!("source {name}: {e}"));
        }
    }
    if problems.is_empty() {
        (StatusCode::OK, "ready\n".to_owned())
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, problems.join("\n") + "\n")
    }
}

/// `trailwatch healthcheck`: GET `url` (plain HTTP), succeed on 200.
/// A few lines of HTTP/1.0 over a socket, with timeouts, instead of an
/// HTTP client: this runs every few seconds in the container.
pub fn check(url: &str, timeout: Duration) -> Result<String, HttpError> {
    let fail = |message: String| HttpError::Check {
        url: url.to_owned(),
        message,
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| fail("only http:// URLs are supported".into()))?;
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let addr = host
        .to_socket_addrs()
        .map_err(|e| fail(format!("bad address: {e}")))?
        .next()
        .ok_or_else(|| fail("address resolves to nothing".into()))?;
    let mut stream = TcpStream::connect_timeout(&addr, timeout).map_err(|e| fail(e.to_string()))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| fail(e.to_string()))?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n")
        .map_err(|e| fail(e.to_string()))?;
    let mut response = Vec::new();
    stream
        .take(1 << 20)
        .read_to_end(&mut response)
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split_whitespace()
        .nth(1)
        .ok_or_else(|| fail("no HTTP status in the response".into()))?;
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .trim()
        .to_owned();
    if status == "200" {
        Ok(body)
    } else {
        Err(fail(format!("status {status}: {body}")))
    }
}
