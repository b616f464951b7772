//! Homeward's integration tests, one binary (one link of the crate): a
//! module per suite, and `support` with the helpers they share.
//!
//! Every test runs beside the others in this one process: none may change
//! process-wide state (environment, working directory) that another reads,
//! and every port comes from the kernel (`support::bind`) except where a
//! gateway must restart on an address known in advance
//! (`support::free_addr`).

mod support;

mod cli;
mod config;
mod corrections;
mod crash;
mod dashboard;
mod evidence;
mod exchange;
mod instances;
mod lifecycle;
mod openapi;
mod peer_auth;
mod protection;
mod schemas;
mod store;
mod store_failure;
mod timers;
