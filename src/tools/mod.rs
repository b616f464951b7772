//! Tools used only by the CLI and tests: the demo, gateways on 127.0.0.1
//! for it (devnet), and `homeward bench`.

pub mod bench;
pub mod demo;
pub mod devnet;
