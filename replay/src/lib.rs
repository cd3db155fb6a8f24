//! kappa-replay: rebuilds a lake table from the log into a new generation, verifies it, and
//! switches readers to it atomically. See `rebuild.rs` for the steps.

mod catch_up;
mod config;
mod error;
pub mod program;
mod progress;
mod rebuild;
mod shared;
mod source;
mod status;
mod verify;
