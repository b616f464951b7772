//! The domain: what Homeward knows about cases, messages and agreements,
//! as pure values and functions. Nothing here does I/O or knows HTTP, SQL
//! or the network; everything above builds on it.

pub mod access;
pub mod admission;
pub mod agreement;
pub mod calendar;
pub mod consent;
pub mod deadline;
pub mod facts;
pub mod handover;
pub mod i18n;
pub mod ids;
pub mod lifecycle;
pub mod message;
pub mod officer;
pub mod person_timeline;
pub mod reconcile;
pub mod search;
pub mod statistics;
pub mod suppression;
