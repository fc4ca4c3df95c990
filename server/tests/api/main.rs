//! Black-box tests of the Vigil server: a real server on an ephemeral port, spoken to over HTTP.
//! Every test runs on SQLite and, when `VIGIL_TEST_POSTGRES_URL` is set, on PostgreSQL.

mod support;

mod areas;
mod assets;
mod auth;
mod bad_input;
mod health;
mod ingest;
mod people;
mod policy_matrix;
mod positions;
mod roster;
mod ws;
