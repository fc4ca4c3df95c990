//! `vigil-load` as a library: the scenarios the binary runs, so that the in-suite test
//! (`tests/harness.rs`) runs them, small, through the same code.

pub mod broadcast;
pub mod client;
pub mod connect;
pub mod mqtt;
pub mod offline;
pub mod positions;
pub mod rollcall;
pub mod setup;
pub mod sos_chat;
pub mod stats;
