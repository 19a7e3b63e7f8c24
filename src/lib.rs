//! saslgate: a SASL authentication daemon that speaks Dovecot 2.3's auth protocol.
//!
//! Postfix, Exim, Dovecot's login and mail processes and `doveadm auth` connect to its Unix
//! sockets exactly as they would to Dovecot's own `auth` service.
//!
//! # Layout
//!
//! The layers below `server` are pure: they never touch a socket, a clock they were not given,
//! or the async reactor's threads with expensive work.
//!
//! - [`protocol`]: wire tokens and limits, line framing, tab-escaping, typed client and master
//!   commands, reply formatting. Untrusted bytes are parsed here and nowhere else.
//! - [`sasl`]: SASL mechanisms as state machines. They say what they need (a plaintext check,
//!   later credentials in a scheme) and never call a database.
//! - [`scheme`]: Dovecot password schemes: `{SCHEME}` parsing, verification, generation.
//! - [`passdb`] / [`userdb`]: the database drivers, built from config in one place.
//! - [`db`]: parsers shared by a passdb and a userdb of the same kind (passwd-file).
//! - [`auth`]: the request layer: runs a mechanism against the passdbs and userdbs, expands
//!   `%variables`, builds the outcome of a request.
//! - [`blocking`]: the one bounded thread pool for expensive work (hashing, later PAM).
//! - [`config`]: YAML loading in two stages (raw serde mirror, then validated values).
//! - [`server`]: sockets, connections, failure delay, privilege drop. Only this layer does I/O.
//! - [`client`]: the client side of the protocol (client and master sockets), used by the
//!   CLI, the bench, the tests and the fuzz targets.

pub mod auth;
pub mod blocking;
pub mod client;
pub mod config;
pub mod db;
pub mod passdb;
pub mod protocol;
pub mod request;
pub mod sasl;
pub mod scheme;
pub mod secret;
pub mod server;
pub mod userdb;
