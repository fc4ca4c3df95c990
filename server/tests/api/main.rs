//! Black-box tests of the Vigil server: a real server on an ephemeral port, spoken to over HTTP.
//! Every test runs on SQLite and, when `VIGIL_TEST_POSTGRES_URL` is set, on PostgreSQL.

mod fakes;
mod support;

mod alerts;
mod areas;
mod assets;
mod audit;
mod auth;
mod bad_input;
mod chat;
mod cluster;
mod crash;
mod fallback_faults;
mod health;
mod ingest;
mod keys;
mod native_push;
mod people;
mod policy_matrix;
mod positions;
mod push;
mod rollcall;
mod roster;
mod sms;
mod sos;
mod transactions;
mod ws;
