//! Start-up and shutdown of one gateway: opens the store, compiles schemas,
//! loads agreements and TLS material, binds the peer and local API ports,
//! and runs both servers and the delivery worker until told to stop.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tower::Service;
use tracing::{Instrument, debug, info, warn};

use crate::agreement::{AgreementBook, AgreementLoadError};
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::delivery::Worker;
use crate::local_api::Principal;
use crate::message::{SchemaCompileError, SchemaRegistry};
use crate::store::{Store, StoreError};
use crate::tls::{self, Identity, TlsError};

/// Most connections served at once per port; more wait in the accept queue.
const MAX_CONNECTIONS: usize = 1024;
/// A TLS handshake that takes longer than this is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long in-flight requests get to finish at shutdown.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Schema(#[from] SchemaCompileError),
    #[error(transparent)]
    Agreement(#[from] AgreementLoadError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration: {0}")]
    Config(String),
    #[error("delivery client for peer {peer}: {message}")]
    Client { peer: String, message: String },
}

/// What every handler and the worker share.
#[derive(Debug)]
pub struct Node {
    pub settings: Settings,
    pub country: String,
    pub registry: SchemaRegistry,
    pub agreements: AgreementBook,
    pub store: Store,
    pub clock: SharedClock,
    /// Wakes the delivery worker when a message is queued.
    pub wake: Notify,
    /// Token hash → who holds it.
    pub tokens: BTreeMap<String, Principal>,
    /// Client certificate subject → who holds it.
    pub cert_subjects: BTreeMap<String, Principal>,
    /// This country's working calendar, for deadlines this node owes.
    pub calendar: crate::timers::calendar::WorkCalendar,
    /// Wakes the timer scheduler when a timer opens.
    pub timer_wake: crate::timers::TimerWake,
    /// Wakes the webhook sender when an alert is queued.
    pub alert_wake: Notify,
    pub metrics: crate::metrics::Metrics,
    /// Per token holder on the local API.
    pub api_limits: crate::ratelimit::RateLimiter,
    /// Per peer country on the peer API.
    pub peer_limits: crate::ratelimit::RateLimiter,
}

/// Who is on the other end of a TLS connection, learnt once after the handshake.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// Country from the client certificate's node URI (peer port only).
    pub node: Option<String>,
    /// Subject of the verified client certificate, if one was presented.
    pub subject: Option<String>,
}

/// Pre-bound listeners, so tests and the demo can learn every port before
/// writing the peers' addresses into each other's settings.
#[derive(Debug)]
pub struct Listeners {
    pub peer: std::net::TcpListener,
    pub api: std::net::TcpListener,
}

impl Listeners {
    pub fn bind(peer: SocketAddr, api: SocketAddr) -> Result<Self, GatewayError> {
        let bind = |addr: SocketAddr| {
            let l = std::net::TcpListener::bind(addr).map_err(|source| GatewayError::Bind {
                addr: addr.to_string(),
                source,
            })?;
            l.set_nonblocking(true)
                .map_err(|source| GatewayError::Bind {
                    addr: addr.to_string(),
                    source,
                })?;
            Ok::<_, GatewayError>(l)
        };
        Ok(Self {
            peer: bind(peer)?,
            api: bind(api)?,
        })
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api
            .local_addr()
            .expect("bound listener has an address")
    }
}

pub struct Gateway {
    node: Arc<Node>,
    peer_listener: TcpListener,
    api_listener: TcpListener,
    peer_tls: Arc<rustls::ServerConfig>,
    api_tls: Arc<rustls::ServerConfig>,
    worker: Worker,
}

impl Gateway {
    /// Builds a gateway listening where `settings` say.
    pub async fn build(settings: Settings, clock: SharedClock) -> Result<Self, GatewayError> {
        let listeners = Listeners::bind(settings.peer_api.listen, settings.local_api.listen)?;
        Self::build_with(settings, listeners, clock).await
    }

    pub async fn build_with(
        settings: Settings,
        listeners: Listeners,
        clock: SharedClock,
    ) -> Result<Self, GatewayError> {
        let registry = SchemaRegistry::embedded()?;
        let agreements = AgreementBook::load(&settings.agreements.dir, &registry)?;
        let identity = Identity::load(&settings.tls.cert, &settings.tls.key)?;
        match identity.node() {
            Some(node) if node == settings.node.country => {}
            other => {
                return Err(TlsError::Config(format!(
                    "tls.cert `{}` names node {:?}, expected urn:homeward:node:{}",
                    settings.tls.cert.display(),
                    other,
                    settings.node.country
                ))
                .into());
            }
        }
        let api_identity = Identity::load(&settings.tls.api_cert, &settings.tls.api_key)?;
        let mut peer_cas = BTreeMap::new();
        for peer in &settings.peers {
            peer_cas.insert(peer.country.clone(), tls::load_certs(&peer.ca)?);
        }
        let peer_tls = tls::peer_server_config(&identity, &peer_cas)?;
        let client_cas = match &settings.local_api.client_ca {
            Some(path) => tls::load_certs(path)?,
            None => Vec::new(),
        };
        let api_tls = tls::api_server_config(&api_identity, &client_cas)?;
        let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let store = Store::open(&settings.database.url, sealer)
            .await?
            .with_lease(settings.delivery.lease());
        let tokens = settings
            .tokens
            .iter()
            .map(|t| {
                (
                    t.sha256.to_ascii_lowercase(),
                    Principal {
                        name: t.name.clone(),
                        role: t.role,
                    },
                )
            })
            .collect();
        let calendar = settings
            .calendar
            .compile()
            .map_err(|e| GatewayError::Config(format!("calendar.{}: {}", e.key, e.message)))?;
        let cert_subjects = settings
            .client_certs
            .iter()
            .map(|c| {
                (
                    c.subject.clone(),
                    Principal {
                        name: c.name.clone(),
                        role: c.role,
                    },
                )
            })
            .collect();
        let node = Arc::new(Node {
            cert_subjects,
            calendar,
            timer_wake: crate::timers::TimerWake::default(),
            alert_wake: Notify::new(),
            metrics: crate::metrics::Metrics::default(),
            api_limits: crate::ratelimit::RateLimiter::new(
                settings.local_api.rate_per_second,
                settings.local_api.burst,
            ),
            peer_limits: crate::ratelimit::RateLimiter::new(
                settings.peer_api.rate_per_second,
                settings.peer_api.burst,
            ),
            country: settings.node.country.clone(),
            settings,
            registry,
            agreements,
            store,
            clock,
            wake: Notify::new(),
            tokens,
        });
        let worker = Worker::new(node.clone(), &identity, &peer_cas)?;
        let to_tokio = |l: std::net::TcpListener| {
            TcpListener::from_std(l).map_err(|source| GatewayError::Bind {
                addr: "pre-bound listener".into(),
                source,
            })
        };
        Ok(Self {
            node,
            peer_listener: to_tokio(listeners.peer)?,
            api_listener: to_tokio(listeners.api)?,
            peer_tls,
            api_tls,
            worker,
        })
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    pub fn peer_addr(&self) -> SocketAddr {
        self.peer_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    pub fn api_addr(&self) -> SocketAddr {
        self.api_listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves until `shutdown` is cancelled, then drains in-flight requests,
    /// lets the worker finish its current batch and closes the store.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) {
        let node = self.node.clone();
        info!(
            node = %node.country,
            peer_addr = %self.peer_addr(),
            api_addr = %self.api_addr(),
            "gateway started"
        );
        let peer_router = crate::peer_api::router(node.clone());
        let api_router = crate::local_api::router(node.clone());
        let peer = tokio::spawn(serve_tls(
            node.clone(),
            "peer",
            self.peer_listener,
            TlsAcceptor::from(self.peer_tls),
            peer_router,
            shutdown.clone(),
        ));
        let api = tokio::spawn(serve_tls(
            node.clone(),
            "api",
            self.api_listener,
            TlsAcceptor::from(self.api_tls),
            api_router,
            shutdown.clone(),
        ));
        let worker = tokio::spawn(self.worker.run(shutdown.clone()));
        let scheduler =
            tokio::spawn(crate::timers::Scheduler::new(node.clone()).run(shutdown.clone()));
        let alerter = match crate::timers::Alerter::new(node.clone()) {
            Ok(a) => tokio::spawn(a.run(shutdown.clone())),
            Err(e) => {
                tracing::error!(error = %e, "operator webhook disabled");
                tokio::spawn(async {})
            }
        };
        let retention = tokio::spawn(retention_job(node.clone(), shutdown.clone()));
        let _ = tokio::join!(peer, api, worker, scheduler, alerter, retention);
        node.store.close().await;
        info!(node = %node.country, "gateway stopped");
    }

    /// Runs the gateway on the current runtime; the handle stops it.
    pub fn spawn(self) -> RunningGateway {
        let shutdown = CancellationToken::new();
        let peer_addr = self.peer_addr();
        let api_addr = self.api_addr();
        let node = self.node.clone();
        let task = tokio::spawn(self.run_until_stopped(shutdown.clone()));
        RunningGateway {
            node,
            peer_addr,
            api_addr,
            shutdown,
            task,
        }
    }
}

/// Purges payloads past their retention at start and then daily.
async fn retention_job(node: Arc<Node>, shutdown: CancellationToken) {
    loop {
        let now = node.clock.now_ms();
        match crate::store::retention::purge(&node.store, now, false, |c| {
            node.agreements.retention_days_of(c)
        })
        .await
        {
            Ok(purged) => {
                for c in &purged {
                    info!(case_ref = %c.case_ref, state = %c.state, "payloads purged after the retention period");
                }
            }
            Err(e) => warn!(error = %e, "retention purge failed; will retry"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_secs(24 * 3600)) => {}
        }
    }
}

/// A gateway running in the background.
pub struct RunningGateway {
    pub node: Arc<Node>,
    pub peer_addr: SocketAddr,
    pub api_addr: SocketAddr,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl RunningGateway {
    pub async fn stop(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
    }
}

/// Accepts TLS connections and serves `app` on each, HTTP/1.1 or HTTP/2.
/// The handshake runs inside the per-connection task under a deadline, and
/// the peer certificate becomes a [`ConnInfo`] attached to every request.
async fn serve_tls(
    node: Arc<Node>,
    port_name: &'static str,
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
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
                        let reason = crate::metrics::handshake_reason(&e);
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
                let leaf = tls
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|certs| certs.first());
                let info = ConnInfo {
                    remote,
                    node: leaf.and_then(tls::node_of),
                    subject: leaf.and_then(tls::subject_of),
                };
                let service =
                    hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                        req.extensions_mut().insert(info.clone());
                        app.clone().call(req)
                    });
                let builder = auto::Builder::new(TokioExecutor::new());
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
