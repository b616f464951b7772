//! Homeward's integration tests, one binary (one link of the crate): a
//! module per suite, and `support` with the helpers they share.
//!
//! Every test runs beside the others in this one process, on threads of
//! its own. So no test changes process-wide state that another reads (the
//! environment; `config::shipped_node_configs_load` sets the working
//! directory, to the package root cargo runs tests in anyway), and every
//! port comes from the kernel (`support::bind`), held from before any
//! settings are written, except where a gateway must (re)start on an
//! address known in advance (`support::free_addr`: `homeward serve` child
//! processes, a peer that starts late).

mod support;

mod batch;
mod cli;
mod config;
mod consent;
mod corrections;
mod crash;
mod dashboard;
mod edge;
mod embassy;
mod evidence;
mod exchange;
mod handover;
mod heal;
mod instances;
mod lifecycle;
mod officer;
mod openapi;
mod peer_auth;
mod protection;
mod reconcile;
mod reload;
mod schemas;
mod signatures;
mod statistics;
mod store;
mod store_failure;
mod timers;
mod versions;
