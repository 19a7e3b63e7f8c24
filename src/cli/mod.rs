//! The tools of the `saslgate` binary beside the daemon: `saslgate bench` (a load generator
//! over the client protocol) and `saslgate pw` (password hashes, like `doveadm pw`). They use
//! the library as any other client of it would; the clap types live here, not in the library.

pub(crate) mod bench;
pub(crate) mod dovecot_service;
pub(crate) mod pw;
