//! A throwaway standalone Samba winbindd (no AD, no smbd) with local tdbsam users, for tests
//! that talk to the real `ntlm_auth`.
//!
//! Nothing system-wide is touched: `smb.conf` and every Samba directory live in a temp dir;
//! the Unix accounts behind the tdbsam users come from nss_wrapper (`LD_PRELOAD`ed, with its
//! own passwd/group files); clients find the winbindd socket through
//! `SELFTEST_WINBINDD_SOCKET_DIR`, which libwbclient honours only with nss_wrapper loaded. A
//! generated `ntlm_auth` wrapper script sets that environment and `--configfile`. The standalone
//! SAM domain is the NetBIOS name, [`DOMAIN`]. winbindd (and the samba-dcerpcd it starts) are
//! stopped by the PIDs in their pid files, checked against our directory, on `stop` and drop.

#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The NetBIOS name, which is the local SAM domain of a standalone server.
pub const DOMAIN: &str = "TESTHOST";
/// A user with an ASCII password.
pub const USER1: (&str, &str) = ("ntuser1", "ntpass1");
/// A user with a UTF-8 password (with a space).
pub const USER2: (&str, &str) = ("ntuser2", "pä ss€2");

const NSS_WRAPPER: &str = "/usr/lib/x86_64-linux-gnu/libnss_wrapper.so";

/// A running (or stopped) winbindd under a temp dir.
pub struct Winbindd {
    dir: tempfile::TempDir,
}

fn need(path: &str, package: &str) {
    assert!(Path::new(path).exists(), "{path} is missing: install the Debian package `{package}` (scripts/install-deps.sh does)");
}

impl Winbindd {
    /// Sets up the users and starts winbindd (`ntlm auth = ntlmv2-only`). Panics with an
    /// install hint when Samba or nss_wrapper is missing.
    pub fn start() -> Winbindd {
        Winbindd::start_with_ntlm_auth("ntlmv2-only")
    }

    /// As [`Winbindd::start`], with smb.conf's `ntlm auth` set to `ntlm_auth` (`yes` also
    /// accepts NTLMv1, which swaks's Authen::NTLM speaks).
    pub fn start_with_ntlm_auth(ntlm_auth: &str) -> Winbindd {
        need("/usr/sbin/winbindd", "winbind");
        need("/usr/bin/ntlm_auth", "winbind");
        need("/usr/bin/wbinfo", "winbind");
        need("/usr/bin/smbpasswd", "samba");
        need(NSS_WRAPPER, "libnss-wrapper");
        let dir = tempfile::Builder::new().prefix("wb").tempdir_in("/tmp").expect("temp dir");
        let w = Winbindd { dir };
        let d = w.dir();
        for sub in ["private", "lock", "state", "cache", "pid", "ncalrpc", "winbindd", "log"] {
            fs::create_dir_all(d.join(sub)).expect("mkdir");
        }
        let p = |s: &str| d.join(s).display().to_string();
        fs::write(
            d.join("smb.conf"),
            format!(
                "[global]\n  workgroup = TESTWG\n  netbios name = {DOMAIN}\n  server role = standalone server\n  security = user\n  passdb backend = tdbsam:{}\n  private dir = {}\n  lock directory = {}\n  state directory = {}\n  cache directory = {}\n  pid directory = {}\n  ncalrpc dir = {}\n  winbindd socket directory = {}\n  log file = {}/log.%m\n  log level = 1\n  interfaces = lo\n  bind interfaces only = yes\n  smb ports = 44545\n  disable netbios = yes\n  load printers = no\n  printcap name = /dev/null\n  disable spoolss = yes\n  ntlm auth = {ntlm_auth}\n  idmap config * : backend = tdb\n  idmap config * : range = 100000-199999\n",
                p("private/passdb.tdb"), p("private"), p("lock"), p("state"), p("cache"), p("pid"), p("ncalrpc"), p("winbindd"), p("log")
            ),
        )
        .expect("smb.conf");
        fs::write(
            d.join("passwd"),
            "root:x:0:0:root:/root:/bin/sh\nntuser1:x:60001:60000:NT user 1:/nonexistent:/bin/false\nntuser2:x:60002:60000:NT user 2:/nonexistent:/bin/false\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n",
        )
        .expect("passwd");
        fs::write(d.join("group"), "root:x:0:\nntusers:x:60000:\nnogroup:x:65534:\n").expect("group");
        for (user, pass) in [USER1, USER2] {
            let mut child = Command::new("/usr/bin/smbpasswd")
                .args(["-c", &p("smb.conf"), "-a", "-s", user])
                .envs(w.env())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .spawn()
                .expect("smbpasswd");
            use std::io::Write;
            child.stdin.take().expect("stdin").write_all(format!("{pass}\n{pass}\n").as_bytes()).expect("smbpasswd input");
            assert!(child.wait().expect("smbpasswd").success(), "smbpasswd -a {user} failed");
        }
        fs::write(
            d.join("ntlm_auth-wrapper"),
            format!(
                "#!/bin/sh\n# ntlm_auth bound to the test winbindd in {dir}\nexport {env}\nexec /usr/bin/ntlm_auth --configfile={dir}/smb.conf \"$@\"\n",
                dir = d.display(),
                env = w.env().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" ")
            ),
        )
        .expect("wrapper");
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(d.join("ntlm_auth-wrapper"), fs::Permissions::from_mode(0o755)).expect("chmod");
        w.run_winbindd();
        w
    }

    /// The temp dir everything lives in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The `ntlm_auth` wrapper to use as the helper path.
    pub fn helper(&self) -> PathBuf {
        self.dir().join("ntlm_auth-wrapper")
    }

    /// The environment Samba tools need to find this winbindd and its users.
    pub fn env(&self) -> Vec<(String, String)> {
        let d = self.dir().display().to_string();
        vec![
            ("LD_PRELOAD".into(), NSS_WRAPPER.into()),
            ("NSS_WRAPPER_PASSWD".into(), format!("{d}/passwd")),
            ("NSS_WRAPPER_GROUP".into(), format!("{d}/group")),
            ("SELFTEST_WINBINDD_SOCKET_DIR".into(), format!("{d}/winbindd")),
        ]
    }

    fn ping(&self) -> bool {
        Command::new("/usr/bin/wbinfo").arg("-p").envs(self.env()).stdout(Stdio::null()).stderr(Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
    }

    fn run_winbindd(&self) {
        let conf = self.dir().join("smb.conf");
        let status = Command::new("/usr/sbin/winbindd").arg("-D").arg("-s").arg(&conf).envs(self.env()).status().expect("winbindd");
        assert!(status.success(), "winbindd -D failed: {status}");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !self.ping() {
            assert!(Instant::now() < deadline, "winbindd did not answer `wbinfo -p` within 20 s; see {}/log", self.dir().display());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Starts winbindd again after [`Winbindd::stop`].
    pub fn restart(&self) {
        self.run_winbindd();
    }

    /// Stops winbindd and samba-dcerpcd by the PIDs in our pid dir, if they are ours.
    pub fn stop(&self) {
        for name in ["winbindd", "samba-dcerpcd"] {
            let file = self.dir().join("pid").join(format!("{name}.pid"));
            let Ok(text) = fs::read_to_string(&file) else { continue };
            let Ok(pid) = text.trim().parse::<i32>() else { continue };
            let ours = fs::read(format!("/proc/{pid}/cmdline")).map(|c| String::from_utf8_lossy(&c).contains(&*self.dir().to_string_lossy())).unwrap_or(false);
            if ours {
                let pid = nix::unistd::Pid::from_raw(pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
                let deadline = Instant::now() + Duration::from_secs(5);
                let alive = || {
                    nix::sys::signal::kill(pid, None).is_ok()
                        && !fs::read_to_string(format!("/proc/{pid}/status")).map(|s| s.contains("State:\tZ")).unwrap_or(true)
                };
                while alive() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(50));
                }
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
            let _ = fs::remove_file(&file);
        }
    }
}

impl Drop for Winbindd {
    fn drop(&mut self) {
        self.stop();
    }
}
