//! The "floor" of `scripts/bench-vs-dovecot.sh`: a trivial auth server that answers every
//! `AUTH` line with `OK\t<id>`, without parsing the request or looking anything up.
//!
//! It speaks just enough of the Dovecot client protocol for `saslgate bench`: the server half of
//! the handshake (`VERSION`, `MECH PLAIN`, `SPID`, `CUID`, `COOKIE`, `DONE`), then one `OK` per
//! `AUTH` line; every other line (`VERSION`, `CPID`) is ignored. Its CPU per login is what the
//! sockets, the runtime and the line framing cost on this machine, the least a real server can
//! spend. Not a server for anything else: it authenticates everyone.
//!
//! usage: `floor_server SOCKET [THREADS]` (THREADS 1, the default, runs a single-threaded
//! runtime). Built by the script with `cargo build --release --example floor_server`.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{UnixListener, UnixStream};

/// The longest line kept; a longer one closes the connection.
const MAX_LINE: usize = 16 * 1024;

fn main() -> std::io::Result<()> {
    let mut args = std::env::args_os().skip(1);
    let Some(socket) = args.next().map(PathBuf::from) else {
        eprintln!("usage: floor_server SOCKET [THREADS]");
        std::process::exit(2);
    };
    let threads: usize = args.next().and_then(|t| t.to_str().and_then(|t| t.parse().ok())).unwrap_or(1);
    let runtime = if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    runtime.block_on(async move {
        let _ = std::fs::remove_file(&socket);
        let listener = UnixListener::bind(&socket)?;
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o666))?;
        }
        let mut cuid = 0u32;
        loop {
            let (stream, _) = listener.accept().await?;
            cuid = cuid.wrapping_add(1);
            tokio::spawn(serve(stream, cuid));
        }
    })
}

async fn serve(mut stream: UnixStream, cuid: u32) -> std::io::Result<()> {
    let hello = format!("VERSION\t1\t2\nMECH\tPLAIN\tplaintext\nSPID\t{}\nCUID\t{cuid}\nCOOKIE\t{:032x}\nDONE\n", std::process::id(), u128::from(cuid));
    stream.write_all(hello.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = 0;
    let mut out = Vec::with_capacity(4096);
    loop {
        let n = stream.read(&mut buf[have..]).await?;
        if n == 0 {
            return Ok(());
        }
        have += n;
        let mut pos = 0;
        while let Some(nl) = buf[pos..have].iter().position(|&b| b == b'\n') {
            let line = &buf[pos..pos + nl];
            if let Some(rest) = line.strip_prefix(b"AUTH\t") {
                let id = rest.split(|&b| b == b'\t').next().unwrap_or_default();
                out.extend_from_slice(b"OK\t");
                out.extend_from_slice(id);
                out.push(b'\n');
            }
            pos += nl + 1;
        }
        buf.copy_within(pos..have, 0);
        have -= pos;
        if have >= MAX_LINE {
            return Ok(());
        }
        if !out.is_empty() {
            stream.write_all(&out).await?;
            out.clear();
        }
    }
}
