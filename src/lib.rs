//! Homeward: a cross-border repatriation message broker. Each national focal
//! point for trafficking victims runs one gateway; gateways exchange
//! schema-validated case messages over mutual TLS under the bilateral
//! agreements their countries signed, with a durable outbox and inbox.
//!
//! # Layout
//!
//! - [`config`]: typed node configuration from TOML plus environment overrides.
//! - [`agreement`]: bilateral agreements as data; who may send what to whom.
//! - [`message`]: the envelope and the JSON Schema registry.
//! - [`tls`]: node identities (`urn:homeward:node:<CC>`), rustls configurations, dev PKI.
//! - [`store`]: the durable outbox and inbox (SQLite).
//! - [`peer_api`]: the gateway-to-gateway API (mutual TLS 1.3).
//! - [`local_api`]: the API this country's systems use (TLS, bearer tokens, roles).
//! - [`timers`]: acknowledgement deadlines, reminders, breaches, SLA figures; business-day calendars.
//! - [`ratelimit`]: per-caller token buckets (429 with Retry-After).
//! - [`metrics`]: counters for `/metrics`.
//! - [`delivery`]: the worker that moves the outbox to peers, with retries.
//! - [`lifecycle`]: the case state derived from its messages, and what may come next.
//! - [`gateway`]: start-up, the TLS servers and graceful shutdown.
//! - [`api_error`]: the one JSON error body of every refusal.
//! - [`clock`]: injectable time.
//! - [`bench`]: `homeward bench` measurements.
//! - [`demo`]: four gateways and one case, end to end.
//! - [`devnet`]: gateways on 127.0.0.1 for the demo, tests and benchmarks.
//! - [`cli`]: the `homeward` command.

pub mod agreement;
pub mod api_error;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod config;
pub mod delivery;
pub mod demo;
pub mod devnet;
pub mod gateway;
pub mod lifecycle;
pub mod local_api;
pub mod message;
pub mod metrics;
pub mod peer_api;
pub mod ratelimit;
pub mod store;
pub mod timers;
pub mod tls;
