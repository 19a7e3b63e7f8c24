//! Code shared by the drivers: parsers and caches a passdb and a userdb of the same kind both
//! use (passwd-file), and the transport to helper processes that mechanisms talk to (the
//! winbind `ntlm_auth` pool).

pub mod helper;
pub mod passwd_file;
pub mod winbind;
