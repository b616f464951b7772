//! `homeward bench`: measurements that are not tests. Each benchmark has
//! its own module; they share the gateway processes of [`procs`].

mod backlog;
mod e2e;
mod procs;
mod screening;
mod sign;
mod timers;

pub use backlog::{BacklogOptions, backlog};
pub use e2e::{E2eOptions, e2e};
pub use screening::{ScreeningOptions, screening};
pub use sign::sign;
pub use timers::timers;
