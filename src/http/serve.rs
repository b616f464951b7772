//! The TLS server loop both ports run: accepts connections up to a limit,
//! handshakes under a deadline, attaches who the peer is to every request,
//! serves HTTP/1.1 or HTTP/2, closes connections left idle, and drains
//! in-flight requests at shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::Service;
use tracing::{Instrument, debug, info, warn};

use crate::app::node::Node;
use crate::tls::ConnInfo;

/// Most connections served at once per port; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a connection may stall.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// Request headers must arrive within this (HTTP/1.1).
    pub read: Duration,
    /// A connection with no request in flight for this long is closed
    /// (HTTP/1.1 and HTTP/2 alike: an HTTP/2 client that opens no stream
    /// holds no slot for ever).
    pub idle: Duration,
}

/// Requests in flight on one connection, and when it was last busy.
struct Activity {
    opened: Instant,
    in_flight: AtomicUsize,
    /// Milliseconds after `opened` that the last request finished.
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Self {
        Self {
            opened: Instant::now(),
            in_flight: AtomicUsize::new(0),
            last_ms: AtomicU64::new(0),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.opened.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// How long nothing has been in flight; zero while a request is.
    fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_ms.load(Ordering::Acquire);
        Duration::from_millis(self.now_ms().saturating_sub(last))
    }
}

/// Marks a request in flight until dropped (the handler answered or the
/// client went away).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Self {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        Self(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.last_ms.store(self.0.now_ms(), Ordering::Release);
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Accepts TLS connections and serves `app` on each, HTTP/1.1 or HTTP/2.
/// The handshake runs inside the per-connection task under a deadline, and
/// the peer certificate becomes a [`ConnInfo`] attached to every request.
pub async fn serve_tls(
    node: Arc<Node>,
    port_name: &'static str,
    listener: TcpListener,
    tls: fn(&Node) -> Arc<rustls::ServerConfig>,
    app: Router,
    timeouts: Timeouts,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let connections = TaskTracker::new();
    loop {
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (tcp, remote) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and similar: back off, keep serving.
                    warn!(port = port_name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let _ = tcp.set_nodelay(true);
        // The material in force when the connection arrived: a reload
        // changes what later handshakes see.
        let acceptor = TlsAcceptor::from(tls(&node));
        let mut reloaded = node.generation();
        let app = app.clone();
        let node = node.clone();
        let shutdown = shutdown.clone();
        let span = tracing::debug_span!("connection", port = port_name, %remote);
        connections.spawn(
            async move {
                let _permit = permit;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        let reason = crate::telemetry::handshake_reason(&e);
                        node.metrics.handshake_failed(port_name, reason);
                        info!(port = port_name, %remote, reason, error = %e, "TLS handshake refused");
                        return;
                    }
                    Err(_) => {
                        node.metrics.handshake_failed(port_name, "timeout");
                        info!(port = port_name, %remote, "TLS handshake timed out");
                        return;
                    }
                };
                let info = ConnInfo::new(remote, tls.get_ref().1.peer_certificates());
                let activity = Arc::new(Activity::new());
                let busy = activity.clone();
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        let busy = Busy::start(&busy);
                        let answer = app.clone().call(req);
                        async move {
                            let response = answer.await;
                            drop(busy);
                            response
                        }
                    });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // A client that trickles its request headers is cut off
                // (bodies are bounded where they are read).
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(timeouts.read);
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                tokio::pin!(conn);
                // Once closing, the client has `timeouts.read` to finish
                // (an HTTP/2 client must answer the GOAWAY's ping); then
                // the connection is dropped.
                let mut closing: Option<tokio::time::Instant> = None;
                loop {
                    // When the connection would have been idle long enough.
                    let check = timeouts
                        .idle
                        .saturating_sub(activity.idle_for())
                        .max(Duration::from_millis(10));
                    let grace_over = async {
                        match closing {
                            Some(at) => tokio::time::sleep_until(at).await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        ended = conn.as_mut() => {
                            if let Err(e) = ended {
                                debug!(error = %e, "connection ended with error");
                            }
                            break;
                        }
                        _ = shutdown.cancelled(), if closing.is_none() => {
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now() + timeouts.read);
                        }
                        // New certificates or CRLs: requests in flight
                        // finish, the next one handshakes under the new
                        // material (a revoked peer is refused there).
                        Ok(()) = reloaded.changed(), if closing.is_none() => {
                            debug!("closing a connection made under replaced credentials");
                            conn.as_mut().graceful_shutdown();
                            closing = Some(tokio::time::Instant::now() + timeouts.read);
                        }
                        _ = tokio::time::sleep(check), if closing.is_none() => {
                            if activity.idle_for() >= timeouts.idle {
                                debug!("closing an idle connection");
                                conn.as_mut().graceful_shutdown();
                                closing = Some(tokio::time::Instant::now() + timeouts.read);
                            }
                        }
                        _ = grace_over => {
                            // A request still being answered finishes (at
                            // shutdown, the drain deadline bounds it).
                            if activity.in_flight.load(Ordering::Acquire) > 0 {
                                closing = Some(tokio::time::Instant::now() + Duration::from_millis(100));
                                continue;
                            }
                            debug!("dropping a connection that did not close in time");
                            break;
                        }
                    }
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    connections.close();
    if tokio::time::timeout(DRAIN_TIMEOUT, connections.wait())
        .await
        .is_err()
    {
        warn!(
            port = port_name,
            "some connections did not finish before shutdown"
        );
    }
}
