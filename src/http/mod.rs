//! The HTTP adapters (axum): the local API by resource and the peer API,
//! thin — extract, call the application service, map the answer — plus the
//! one error body and the TLS server loop both ports run on.

pub mod error;
pub mod local;
pub mod openapi;
pub mod peer;
pub mod serve;
