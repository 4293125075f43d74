//! A key-value server speaking RESP2, the Redis protocol, built to be updated live with dsu.
//!
//! - [`db`]: the database, 16 shards of entries, each behind its own lock, in field cells
//!   (`dsu::Cell`) of the [`Db`] that every connection task shares through an `Arc`: a release
//!   that changes the entry's type transforms every shard where it is.
//! - [`expire`]: the expiration index of a shard, the entries that have a deadline, soonest first.
//! - [`commands`]: the handlers, one function per command.
//! - [`conn`]: a connection: read, answer every whole request, write once.
//! - [`purge`]: the background task that drops expired entries a few at a time.
//! - [`snapshot`]: the file a graceful restart saves the database to and loads it from.
//! - [`server`]: the command line, the listener, the accept loop (the update point), shutdown.
//!
//! Every function a release may change is `#[dsu::updateable]`, and every path from a tokio
//! worker to the database goes through an updateable `async fn` ([`conn::answer`],
//! [`Db::purge_step`]), so the worker counts as running while it holds shard data and an update
//! that transforms it waits for that moment to end.

pub mod commands;
pub mod conn;
pub mod db;
pub mod expire;
pub mod purge;
pub mod release;
pub mod server;
pub mod snapshot;

pub use db::{now_ms, Db, Entry, Shard};
