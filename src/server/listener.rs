//! Binding the Unix sockets, and dropping root privileges afterwards.
//!
//! A stale socket (left by a crashed daemon) is replaced; a socket that still answers belongs
//! to a running daemon, and start-up stops with a clear error instead of stealing it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use nix::unistd::{Gid, Group, Uid, User};
use std::os::unix::net::UnixListener;

use crate::config::ListenerConfig;

/// A start-up problem with a socket or the privilege drop; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// Binds one listener: creates its folder, replaces a stale socket, sets mode and owner. It
/// returns a std listener so binding and the privilege drop happen before any thread starts;
/// [`into_tokio`] hands it to the runtime.
pub fn bind(config: &ListenerConfig) -> Result<UnixListener, SetupError> {
    let path = &config.path;
    let shown = path.display();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| SetupError(format!("{}: cannot create the socket folder: {e}", dir.display())))?;
    }
    if path.exists() || std::fs::symlink_metadata(path).is_ok() {
        if std::os::unix::net::UnixStream::connect(path).is_ok() {
            return Err(SetupError(format!("{shown}: another process is listening on this socket; stop it or choose another path")));
        }
        std::fs::remove_file(path).map_err(|e| SetupError(format!("{shown}: cannot remove the stale socket: {e}")))?;
    }
    let listener = UnixListener::bind(path).map_err(|e| SetupError(format!("{shown}: cannot listen: {e}")))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(config.mode))
        .map_err(|e| SetupError(format!("{shown}: cannot set mode {:o}: {e}", config.mode)))?;
    if config.user.is_some() || config.group.is_some() {
        let uid = config.user.as_deref().map(user_id).transpose()?;
        let gid = config.group.as_deref().map(group_id).transpose()?;
        nix::unistd::chown(path, uid, gid).map_err(|e| SetupError(format!("{shown}: cannot change the owner: {e} (run saslgate as root to set `user`/`group` of a listener)")))?;
    }
    Ok(listener)
}

fn user_id(name: &str) -> Result<Uid, SetupError> {
    match User::from_name(name) {
        Ok(Some(u)) => Ok(u.uid),
        _ => Err(SetupError(format!("unknown user `{name}`; create it or fix the `user` setting"))),
    }
}

fn group_id(name: &str) -> Result<Gid, SetupError> {
    match Group::from_name(name) {
        Ok(Some(g)) => Ok(g.gid),
        _ => Err(SetupError(format!("unknown group `{name}`; create it or fix the `group` setting"))),
    }
}

/// Drops root privileges to `user` and `group` (the user's primary group when `group` is not
/// set), clearing supplementary groups. Called after the sockets are bound and before any
/// client byte is read. Without root, or without a user to drop to, it only warns when the
/// daemon would serve as root.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>) -> Result<(), SetupError> {
    let running_as_root = Uid::effective().is_root();
    let Some(user) = user else {
        if running_as_root {
            tracing::warn!("running as root: set the top-level `user:` (and `group:`) so saslgate drops privileges after binding its sockets");
        }
        if group.is_some() {
            return Err(SetupError("`group:` is set without `user:`; set both".into()));
        }
        return Ok(());
    };
    let account = match User::from_name(user) {
        Ok(Some(u)) => u,
        _ => return Err(SetupError(format!("unknown user `{user}` in the top-level `user:` setting; create it (e.g. `adduser --system {user}`)"))),
    };
    let gid = match group {
        Some(g) => group_id(g)?,
        None => account.gid,
    };
    if !running_as_root {
        if Uid::effective() == account.uid {
            return Ok(());
        }
        return Err(SetupError(format!("`user: {user}` needs saslgate to start as root (it binds, then drops to {user})")));
    }
    nix::unistd::setgroups(&[]).map_err(|e| SetupError(format!("cannot clear supplementary groups: {e}")))?;
    nix::unistd::setgid(gid).map_err(|e| SetupError(format!("cannot switch to group id {gid}: {e}")))?;
    nix::unistd::setuid(account.uid).map_err(|e| SetupError(format!("cannot switch to user {user}: {e}")))?;
    if nix::unistd::setuid(Uid::from_raw(0)).is_ok() {
        return Err(SetupError("privileges could be regained after the drop; refusing to run".into()));
    }
    tracing::info!(user, gid = gid.as_raw(), "dropped privileges");
    Ok(())
}

/// Removes the socket files of a stopping daemon.
pub fn remove_sockets(configs: &[ListenerConfig]) {
    for c in configs {
        if is_socket(&c.path) {
            let _ = std::fs::remove_file(&c.path);
        }
    }
}

fn is_socket(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::symlink_metadata(path).map(|m| m.file_type().is_socket()).unwrap_or(false)
}

/// Hands a bound std listener to the tokio runtime (must run inside it).
pub fn into_tokio(listener: UnixListener) -> std::io::Result<tokio::net::UnixListener> {
    listener.set_nonblocking(true)?;
    tokio::net::UnixListener::from_std(listener)
}
