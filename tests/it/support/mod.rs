//! Helpers of the integration tests, by job: the throwaway PKI, gateways
//! (in-process or as child processes), the tests' own API clients,
//! synthetic messages, and the nodes' databases.

pub mod browser;
pub mod client;
pub mod db;
pub mod gateway;
pub mod messages;
pub mod pg;
pub mod pki;

pub use browser::*;
pub use client::*;
pub use db::*;
pub use gateway::*;
pub use messages::*;
pub use pki::*;
