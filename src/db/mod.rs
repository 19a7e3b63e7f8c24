//! Code shared by the drivers: parsers and caches a passdb and a userdb of the same kind both
//! use (passwd-file), and the transport to helper processes that mechanisms talk to.

pub mod helper;
pub mod pam;
pub mod passwd_file;
