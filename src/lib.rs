//! Homeward: a cross-border repatriation message broker. Each national focal
//! point for trafficking victims runs one gateway; gateways exchange
//! schema-validated case messages over mutual TLS under the bilateral
//! agreements their countries signed, with a durable outbox and inbox.
//!
//! # Layout
//!
//! Layers, each importing only those below it (`python3
//! ../shared/tools/modgraph.py src` finds any import circle):
//!
//! ```text
//!  7  tools        demo · devnet · bench                 (CLI and tests only)
//!  6  composition  gateway · cli
//!  5  http         local (by resource) · peer · error · serve
//!  4  app          node · submit · receive · delivery · timers · alerts · retention · evidence
//!  3  infra        config · tls · signing · store · telemetry · ratelimit
//!  2  domain       ids · message · agreement · lifecycle · calendar · deadline · admission · access
//!  1  foundations  clock · protocol
//! ```
//!
//! 1. Foundations
//!    - [`clock`]: injectable time, RFC 3339 at millisecond precision.
//!    - [`protocol`]: the peer wire contract (paths, batch limit, receipt,
//!      batch request and answer, the error body), shared by server and client.
//! 2. Domain, pure: no HTTP, SQL or network.
//!    - [`domain::ids`]: case references parsed into their parties.
//!    - [`domain::message`]: the envelope and the JSON Schema registry.
//!    - [`domain::agreement`]: bilateral agreements as data; who may send what to whom.
//!    - [`domain::lifecycle`]: the case state derived from its messages, and what may come next.
//!    - [`domain::calendar`]: business days of a country.
//!    - [`domain::deadline`]: which timer a message opens, and when it falls due.
//!    - [`domain::admission`]: whether a message may enter, as `Refusal` values.
//!    - [`domain::access`]: roles and the authenticated caller.
//!    - [`domain::handover`], [`domain::person_timeline`]: the printed
//!      handover record and the person's own timeline, from a case's messages;
//!      [`domain::i18n`] their labels in each language.
//! 3. Infrastructure
//!    - [`config`]: typed node configuration from TOML plus environment overrides.
//!    - [`tls`]: node identities (`urn:homeward:node:<CC>`), rustls configurations,
//!      who is on a connection, the dev PKI.
//!    - [`credentials`]: the node's certificates, keys, peer CAs and CRLs,
//!      loaded and replaced together.
//!    - [`signing`]: detached JWS signatures of envelopes and receipts, by
//!      each node's document-signing certificate, and their verification.
//!    - [`store`]: the durable outbox, inbox, timers and audit log (SQLite or PostgreSQL).
//!    - [`telemetry`]: metrics for `/metrics` and the tracing set-up.
//!    - [`ratelimit`]: per-caller token buckets.
//! 4. Application services
//!    - [`app::node`]: the node state every service shares.
//!    - [`app::submit`], [`app::receive`]: a message in from this country's
//!      systems, or from a peer.
//!    - [`app::delivery`]: the worker that moves the outbox to peers, with
//!      retries; `step()` runs it once.
//!    - [`app::timers`], [`app::alerts`], [`app::retention`]: deadlines and
//!      SLA figures, the operator webhook, the purge of old payloads.
//!    - [`app::reload`]: new certificates, CRLs and agreements without a restart.
//!    - [`app::printed`], [`app::pdf`]: a case's printed documents from the
//!      store, and a page to PDF with headless Chromium.
//!    - [`evidence`]: a case's signed messages, receipts, chains and audit
//!      records as one bundle, and its offline verification.
//! 5. HTTP adapters (axum)
//!    - [`http::local`]: the API this country's systems use, one module per resource.
//!    - [`http::peer`]: the gateway-to-gateway API (mutual TLS 1.3).
//!    - [`http::error`]: the one JSON error body of every refusal, and its statuses.
//!    - [`http::serve`]: the TLS server loop of both ports.
//! 6. Composition
//!    - [`gateway`]: start-up, the servers and workers, graceful shutdown.
//!    - [`cli`]: the `homeward` command.
//! 7. Tools: [`tools::demo`], [`tools::devnet`], [`tools::bench`].

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod credentials;
pub mod domain;
pub mod evidence;
pub mod gateway;
pub mod http;
pub mod protocol;
pub mod ratelimit;
pub mod signing;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod tools;
