//! Databases shared by a passdb and a userdb of the same kind.

pub mod passwd_file;
