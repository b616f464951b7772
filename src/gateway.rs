//! Composition: start-up and shutdown of one gateway. Opens the store,
//! compiles schemas, loads agreements and TLS material, builds the node
//! state, binds the peer and local API ports, and runs both servers, the
//! delivery worker, the timer scheduler, the alerter and the retention job
//! until told to stop. The only module (with `cli`) that knows everything.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::delivery::{DeliveryError, Worker};
use crate::app::node::{Node, Parts};
use crate::app::timers::Scheduler;
use crate::clock::SharedClock;
use crate::config::Settings;
use crate::credentials::Credentials;
use crate::domain::access::Principal;
use crate::domain::agreement::{AgreementBook, AgreementLoadError};
use crate::domain::message::{SchemaCompileError, SchemaRegistry};
use crate::http::serve::{Timeouts, serve_tls};
use crate::store::lock::DatabaseLock;
use crate::store::{Store, StoreError};
use crate::tls::TlsError;

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
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error(transparent)]
    Reload(#[from] crate::app::reload::ReloadError),
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
    /// `None` once taken by [`Gateway::take_worker`].
    worker: Option<Worker>,
    /// This gateway's claim on its SQLite file, held until it stops.
    lock: Option<DatabaseLock>,
}

impl Gateway {
    /// Builds a gateway listening where `settings` say.
    pub async fn build(settings: Settings, clock: SharedClock) -> Result<Self, GatewayError> {
        // Before binding: a second gateway on the same file is refused for
        // that, not for the ports the first one holds.
        let lock = DatabaseLock::acquire(&settings.database.url)?;
        let listeners = Listeners::bind(settings.peer_api.listen, settings.local_api.listen)?;
        Self::build_locked(settings, listeners, clock, lock).await
    }

    /// Builds a gateway on pre-bound listeners.
    pub async fn build_with(
        settings: Settings,
        listeners: Listeners,
        clock: SharedClock,
    ) -> Result<Self, GatewayError> {
        let lock = DatabaseLock::acquire(&settings.database.url)?;
        Self::build_locked(settings, listeners, clock, lock).await
    }

    async fn build_locked(
        settings: Settings,
        listeners: Listeners,
        clock: SharedClock,
        lock: Option<DatabaseLock>,
    ) -> Result<Self, GatewayError> {
        let registry = SchemaRegistry::embedded()?;
        let agreements = AgreementBook::load(&settings.agreements.dir, &registry)?;
        let credentials = Credentials::load(&settings)?;
        crate::app::reload::check_signing(&settings.node.country, &agreements, &credentials)?;
        let sealer = crate::store::seal::Sealer::from_settings(&settings.encryption)
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let store = Store::open(&settings.database.url, sealer)
            .await?
            .with_lease(settings.delivery.lease());
        // Before serving: a report asked for at once must count every
        // message already stored.
        crate::app::statistics::backfill(&store).await?;
        let tokens = settings
            .tokens
            .iter()
            .map(|t| {
                (
                    t.sha256.to_ascii_lowercase(),
                    Principal {
                        name: t.name.clone(),
                        role: t.role,
                        serves: t.serves.clone(),
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
                        serves: c.serves.clone(),
                    },
                )
            })
            .collect();
        let node = Arc::new(Node::new(Parts {
            settings,
            registry,
            agreements,
            credentials,
            store,
            clock,
            tokens,
            cert_subjects,
            calendar,
        }));
        node.metrics.certificates(
            node.credentials()
                .expiry
                .iter()
                .map(|e| (e.which.as_str(), e.not_after)),
        );
        let worker = Worker::new(node.clone())?;
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
            worker: Some(worker),
            lock,
        })
    }

    pub fn node(&self) -> &Arc<Node> {
        &self.node
    }

    /// Takes the delivery worker out, so that it does not run with the
    /// gateway: the caller drives it with [`Worker::step`] (tests that are
    /// not about the delivery loop itself).
    pub fn take_worker(&mut self) -> Option<Arc<Worker>> {
        self.worker.take().map(Arc::new)
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
        let lock = self.lock;
        let peer_router = crate::http::peer::router(node.clone());
        let api_router = crate::http::local::router(node.clone());
        let peer = tokio::spawn(serve_tls(
            node.clone(),
            "peer",
            self.peer_listener,
            |node: &Node| node.credentials().peer_tls.clone(),
            peer_router,
            Timeouts {
                read: node.settings.peer_api.read_timeout(),
                idle: node.settings.peer_api.idle_timeout(),
            },
            shutdown.clone(),
        ));
        let api = tokio::spawn(serve_tls(
            node.clone(),
            "api",
            self.api_listener,
            |node: &Node| node.credentials().api_tls.clone(),
            api_router,
            Timeouts {
                read: node.settings.local_api.read_timeout(),
                idle: node.settings.local_api.idle_timeout(),
            },
            shutdown.clone(),
        ));
        let worker = match self.worker {
            Some(w) => tokio::spawn(Arc::new(w).run(shutdown.clone())),
            None => tokio::spawn(async {}),
        };
        let scheduler = tokio::spawn(Scheduler::new(node.clone()).run(shutdown.clone()));
        let alerter = match crate::app::alerts::Alerter::new(node.clone()) {
            Ok(a) => tokio::spawn(a.run(shutdown.clone())),
            Err(e) => {
                tracing::error!(error = %e, "operator webhook disabled");
                tokio::spawn(async {})
            }
        };
        let retention = tokio::spawn(crate::app::retention::run(node.clone(), shutdown.clone()));
        let watch = tokio::spawn(crate::app::reload::watch(node.clone(), shutdown.clone()));
        let _ = tokio::join!(peer, api, worker, scheduler, alerter, retention, watch);
        node.store.close().await;
        // The file is free for the next gateway only once this one has let go.
        drop(lock);
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
