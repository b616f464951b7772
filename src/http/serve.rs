//! The TLS server loop both ports run: accepts connections up to a limit,
//! handshakes under a deadline, attaches who the peer is to every request,
//! serves HTTP/1.1 or HTTP/2, and drains in-flight requests at shutdown.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
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

/// Accepts TLS connections and serves `app` on each, HTTP/1.1 or HTTP/2.
/// The handshake runs inside the per-connection task under a deadline, and
/// the peer certificate becomes a [`ConnInfo`] attached to every request.
/// Request headers must arrive within `read_timeout`.
pub async fn serve_tls(
    node: Arc<Node>,
    port_name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    read_timeout: Duration,
    shutdown: CancellationToken,
) {
    let limit = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
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
        let acceptor = acceptor.clone();
        let app = app.clone();
        let node = node.clone();
        let watcher = graceful.watcher();
        let span = tracing::debug_span!("connection", port = port_name, %remote);
        tokio::spawn(
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
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        app.clone().call(req)
                    });
                let mut builder = auto::Builder::new(TokioExecutor::new());
                // A client that trickles its request headers is cut off
                // (bodies are bounded where they are read).
                builder
                    .http1()
                    .timer(TokioTimer::new())
                    .header_read_timeout(read_timeout);
                let conn = builder.serve_connection(TokioIo::new(tls), service);
                if let Err(e) = watcher.watch(conn.into_owned()).await {
                    debug!(error = %e, "connection ended with error");
                }
            }
            .instrument(span),
        );
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown())
        .await
        .is_err()
    {
        warn!(
            port = port_name,
            "some connections did not finish before shutdown"
        );
    }
}
