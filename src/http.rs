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
pub(crate) const DEFAULT_LISTEN: &str = "127.0.0.1:9808";

/// What `/healthz` and `/readyz` report, updated by the daemon loop.
pub struct Health {
    /// When the main loop last made progress (ms since the epoch).
    last_tick_ms: AtomicU64,
    /// No tick for this long means the loop is stuck: not alive. A source
    /// busy in one listing or fetch for this long is reported by `/readyz`.
    stall_after_ms: u64,
    /// Each source's state, by label.
    sources: Mutex<BTreeMap<String, SourceHealth>>,
}

/// One source as `/readyz` sees it.
#[derive(Default)]
struct SourceHealth {
    /// Its last listing's error, `None` once one succeeded.
    problem: Option<String>,
    /// Since when (ms since the epoch) it has been inside one listing or
    /// fetch; `None` while it sleeps until its next poll or waits for the
    /// engine. Every AWS call has a timeout, so a source busy far longer
    /// than any call is stuck, and nothing else would say so: its last
    /// listing succeeded.
    busy_since_ms: Option<u64>,
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
    pub(crate) fn tick(&self) {
        self.last_tick_ms.store(now_ms(), Ordering::Relaxed);
    }

    fn with_source(&self, name: &str, f: impl FnOnce(&mut SourceHealth)) {
        let mut sources = self.sources.lock().unwrap_or_else(|p| p.into_inner());
        f(sources.entry(name.to_owned()).or_default());
    }

    /// A source was listed: `problem` is `None`, or why not (a bounded
    /// message, no secrets: the SDK's error text names the operation and
    /// the service's code).
    pub fn source(&self, name: &str, problem: Option<String>) {
        self.with_source(name, |s| s.problem = problem);
    }

    /// A source starts (`true`) or ends (`false`) one listing or fetch.
    pub(crate) fn busy(&self, name: &str, busy: bool) {
        let now = now_ms();
        self.with_source(name, |s| s.busy_since_ms = busy.then_some(now));
    }

    /// What is wrong with the loop, if it has stopped making progress.
    fn stall(&self) -> Option<String> {
        let idle = now_ms().saturating_sub(self.last_tick_ms.load(Ordering::Relaxed));
        (idle > self.stall_after_ms).then(|| format!("main loop stalled for {} s", idle / 1000))
    }

    /// Every problem but the store's: a stalled loop, each source's last
    /// listing error, each source stuck in one listing or fetch.
    pub fn problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self.stall().into_iter().collect();
        let now = now_ms();
        for (name, s) in self
            .sources
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            if let Some(e) = &s.problem {
                problems.push(format!("source {name}: {e}"));
            }
            if let Some(since) = s.busy_since_ms
                && now.saturating_sub(since) > self.stall_after_ms
            {
                problems.push(format!(
                    "source {name}: one listing or fetch has taken {} s (stuck?)",
                    now.saturating_sub(since) / 1000
                ));
            }
        }
        problems
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

/// Ready: alive, the store takes a write, every source's last listing
/// succeeded and none is stuck in one. The body lists each problem.
async fn readyz(State(app): State<App>) -> impl IntoResponse {
    let mut problems = app.health.problems();
    let store = Arc::clone(&app.store);
    match tokio::task::spawn_blocking(move || store.probe()).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => problems.push(format!("state store not writable: {e}")),
        Err(e) => problems.push(format!("state store probe failed: {e}")),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A source inside one listing for longer than the stall limit is
    /// reported, by name, until the listing ends; one sleeping until its
    /// next poll is not, however long it sleeps.
    #[test]
    fn a_source_stuck_in_one_listing_is_reported_until_it_returns() {
        let health = Health::new(Duration::from_millis(20));
        health.source("s3:bucket", None);
        health.source("sqs:queue", None);
        health.busy("s3:bucket", true);
        health.busy("sqs:queue", true);
        health.busy("sqs:queue", false);
        std::thread::sleep(Duration::from_millis(60));
        health.tick();
        let problems = health.problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("source s3:bucket: one listing or fetch has taken"),
            "{problems:?}"
        );
        health.busy("s3:bucket", false);
        assert_eq!(health.problems(), Vec::<String>::new());
        health.source("sqs:queue", Some("AccessDenied (403)".into()));
        assert_eq!(health.problems(), ["source sqs:queue: AccessDenied (403)"]);
    }
}
