//! Binding the Unix sockets, and dropping root privileges afterwards.
//!
//! A stale socket (left by a crashed daemon) is replaced; a socket that still answers belongs
//! to a running daemon, and start-up stops with a clear error instead of stealing it.

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{open, openat, renameat, AtFlags, OFlag};
use nix::sys::stat::{fchmodat, fstat, fstatat, mkdirat, FchmodatFlags, Mode, SFlag};
use nix::unistd::{fchownat, unlinkat, Gid, Group, Uid, UnlinkatFlags, User};

use crate::config::ListenerConfig;

/// A start-up problem with a socket or the privilege drop; the message says what to do.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SetupError(String);

/// Binds one listener: creates its folder, replaces a stale socket, sets mode and owner. It
/// returns a std listener so binding and the privilege drop happen before a client byte is
/// read; [`into_tokio`] hands it to the runtime.
///
/// The socket's folder may be writable by someone else (Postfix owns
/// `/var/spool/postfix/private`, where it wants our socket), who could swap the path for a
/// symlink at any moment. So no operation here follows the final path by name as root: the
/// socket is bound in a fresh private folder (0700, created next to the target and reached
/// only through its file descriptor), given its mode and owner there, where nobody else can
/// reach it, and then renamed into place in one step. Afterwards `lstat` must find our inode
/// at the path, or start-up stops. Nothing here touches the process-wide umask, so binding is
/// safe with other threads running (tests, the log writer).
pub fn bind(config: &ListenerConfig) -> Result<UnixListener, SetupError> {
    let path = &config.path;
    let shown = path.display();
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SetupError(format!("{shown}: not a socket path (it names no file)")));
    };
    let dir = if dir.as_os_str().is_empty() { Path::new(".") } else { dir };
    std::fs::create_dir_all(dir).map_err(|e| SetupError(format!("{}: cannot create the socket folder: {e}", dir.display())))?;
    let dirfd = open(dir, OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| SetupError(format!("{}: cannot open the socket folder: {e}", dir.display())))?;
    let uid = config.user.as_deref().map(user_id).transpose()?;
    let gid = config.group.as_deref().map(group_id).transpose()?;

    // What is at the path now: nothing, a stale socket or a symlink (both replaced by the
    // rename below; unlink and rename never follow a symlink), or a live socket (refused).
    match fstatat(&dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st) if file_type(&st) == SFlag::S_IFSOCK => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SetupError(format!("{shown}: another process is listening on this socket; stop it or choose another path")));
            }
        }
        Ok(st) if file_type(&st) == SFlag::S_IFLNK => {}
        Ok(_) => return Err(SetupError(format!("{shown}: exists and is not a socket; remove it or choose another path"))),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(SetupError(format!("{shown}: cannot inspect the socket path: {e}"))),
    }

    let private = Private::create(&dirfd, name, dir)?;
    let result = private.bind_and_move(config, &dirfd, name, uid, gid);
    private.remove(&dirfd);
    result
}

/// A private folder next to the socket, reached only through its descriptor.
struct Private {
    name: std::ffi::OsString,
    fd: OwnedFd,
}

impl Private {
    fn create(dirfd: &OwnedFd, socket: &std::ffi::OsStr, dir: &Path) -> Result<Private, SetupError> {
        let mut name = std::ffi::OsString::from(".");
        name.push(socket);
        name.push(format!(".saslgate-{:016x}", rand::random::<u64>()));
        let shown = dir.join(&name);
        let shown = shown.display();
        mkdirat(dirfd, name.as_os_str(), Mode::S_IRWXU).map_err(|e| SetupError(format!("{shown}: cannot create a private folder to bind in: {e}")))?;
        // Opened without following a symlink; it must still be the folder we just made.
        let fd = match openat(dirfd, name.as_os_str(), OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()) {
            Ok(fd) => fd,
            Err(e) => {
                return Err(SetupError(format!(
                    "{shown}: the private folder changed while saslgate was starting ({e}); is another process writing to this folder?"
                )))
            }
        };
        let private = Private { name, fd };
        match fstat(&private.fd) {
            Ok(st) if st.st_uid == Uid::effective().as_raw() && st.st_mode & 0o7777 == 0o700 => Ok(private),
            _ => {
                private.remove(dirfd);
                Err(SetupError(format!("{shown}: the private folder changed while saslgate was starting; is another process writing to this folder?")))
            }
        }
    }

    fn bind_and_move(
        &self,
        config: &ListenerConfig,
        dirfd: &OwnedFd,
        name: &std::ffi::OsStr,
        uid: Option<Uid>,
        gid: Option<Gid>,
    ) -> Result<UnixListener, SetupError> {
        let path = &config.path;
        let shown = path.display();
        // The private folder through its descriptor: the kernel resolves this to the folder we
        // hold, wherever its name has gone since.
        let inner = Path::new("/proc/self/fd").join(self.fd.as_raw_fd().to_string()).join(name);
        let listener =
            UnixListener::bind(&inner).map_err(|e| SetupError(format!("{shown}: cannot listen: {e} (binding through /proc/self/fd needs /proc)")))?;
        // Only we can create entries in the private folder, so these act on our socket.
        fchmodat(&self.fd, name, Mode::from_bits_truncate(config.mode), FchmodatFlags::FollowSymlink)
            .map_err(|e| SetupError(format!("{shown}: cannot set mode {:o}: {e}", config.mode)))?;
        if uid.is_some() || gid.is_some() {
            fchownat(&self.fd, name, uid, gid, AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(|e| SetupError(format!("{shown}: cannot change the owner: {e} (run saslgate as root to set `user`/`group` of a listener)")))?;
        }
        let ours = fstatat(&self.fd, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(|e| SetupError(format!("{shown}: cannot inspect the new socket: {e}")))?;
        if file_type(&ours) != SFlag::S_IFSOCK {
            return Err(SetupError(format!("{shown}: the new socket is not a socket; refusing to start")));
        }
        renameat(&self.fd, name, dirfd, name).map_err(|e| SetupError(format!("{shown}: cannot move the socket into place: {e}")))?;
        // The path must now be our inode, with the mode and owner we gave it.
        let ok = match fstatat(dirfd, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(st) => {
                (st.st_dev, st.st_ino) == (ours.st_dev, ours.st_ino)
                    && file_type(&st) == SFlag::S_IFSOCK
                    && st.st_mode & 0o7777 == config.mode & 0o7777
                    && uid.is_none_or(|u| u.as_raw() == st.st_uid)
                    && gid.is_none_or(|g| g.as_raw() == st.st_gid)
            }
            Err(_) => false,
        };
        if !ok {
            return Err(SetupError(format!(
                "{shown}: the socket was replaced while saslgate was starting; another process writes to this folder. Check who owns {}",
                path.parent().unwrap_or(Path::new("/")).display()
            )));
        }
        Ok(listener)
    }

    /// Removes the private folder (and the socket, when it is still in there). By name in the
    /// parent: if someone swapped it, `rmdir` removes at most their own empty folder and never
    /// follows a symlink.
    fn remove(&self, dirfd: &OwnedFd) {
        let _ = std::fs::read_dir(Path::new("/proc/self/fd").join(self.fd.as_raw_fd().to_string())).map(|entries| {
            for entry in entries.flatten() {
                let _ = unlinkat(&self.fd, entry.file_name().as_os_str(), UnlinkatFlags::NoRemoveDir);
            }
        });
        let _ = unlinkat(dirfd, self.name.as_os_str(), UnlinkatFlags::RemoveDir);
    }
}

fn file_type(st: &nix::sys::stat::FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
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
        _ => Err(SetupError(format!("unknown group `{name}`; create it or fix the `group` / `extra_groups` setting"))),
    }
}

/// Drops root privileges to `user` and `group` (the user's primary group when `group` is not
/// set), keeping only the `extra_groups` as supplementary groups. Called after the sockets are bound and before any
/// client byte is read. Without root, or without a user to drop to, it only warns when the
/// daemon would serve as root.
pub fn drop_privileges(user: Option<&str>, group: Option<&str>, extra_groups: &[String]) -> Result<(), SetupError> {
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
    // Every supplementary group root had is dropped; only those the admin lists are kept.
    let extra = extra_groups.iter().map(|g| group_id(g)).collect::<Result<Vec<_>, _>>()?;
    nix::unistd::setgroups(&extra).map_err(|e| SetupError(format!("cannot set supplementary groups: {e}")))?;
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
