//! placeholder
pub mod clock;
pub mod codec;
pub mod config;
pub mod game;
pub mod hub;
pub mod protocol;
