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
//!   commands, reply formatting. Untrusted bytes from peers are parsed here.
//! - [`sasl`]: SASL mechanisms as state machines. They say what they need (a plaintext check,
//!   credentials in a scheme, a helper process's answer) and never call a database.
//! - [`scheme`]: Dovecot password schemes: `{SCHEME}` parsing, verification, generation.
//! - [`request`]: the data a request carries (request info, fields, `%variable` templates,
//!   network lists), below both the config and the drivers.
//! - [`config`]: YAML loading in two stages (raw serde mirror, then validated values).
//! - [`db`]: what the drivers share: the shared-resources context, the passwd-file cache, PAM
//!   and its thread pool, the winbind helper processes.
//! - [`passdb`] / [`userdb`]: the database drivers, built from config in one place.
//! - [`auth`]: the request layer: an AUTH from its first line to its answer, the passdb and
//!   userdb chains, penalties, the auth cache, logins waiting for REQUEST.
//! - [`blocking`]: the one bounded thread pool for expensive hashing.
//! - [`server`]: sockets and connections, privilege drop. Only this layer owns sockets, and it
//!   talks to [`auth`] alone.
//! - [`client`]: the client side of the protocol, for the CLI, the bench and the tests.

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
