//! Application services: the node's shared state and what it does with
//! it — submit, receive, deliver, keep deadlines, alert, purge, print. They speak
//! in domain values and store calls; the HTTP adapters above call them.

pub mod alerts;
pub mod delivery;
pub mod health;
pub mod node;
pub mod pdf;
pub mod printed;
pub mod receive;
pub mod reconcile;
pub mod reload;
pub mod report;
pub mod retention;
pub mod statistics;
pub mod submit;
pub mod timers;
pub mod wake;
pub mod withdrawal;
