//! `saslgate pw`: list, generate and test password hashes, like `doveadm pw`.
//!
//! Output matches `doveadm pw`: a generated hash is printed as `{SCHEME}hash`, a verified one
//! gets ` (verified)` appended, and errors start with `Fatal:`. Exit codes are meant for scripts:
//! 0 success, 1 the password does not match, 2 bad input (unknown scheme, malformed hash,
//! missing `{SCHEME}` prefix, no password).

use std::io::{BufRead, IsTerminal};
use std::process::ExitCode;

use saslgate::scheme::{self, Encoding, Scheme, StoredPassword};

/// Arguments of `saslgate pw`, named as `doveadm pw`'s.
// No `Debug`: it holds the password given with -p.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// List the known schemes.
    #[arg(short = 'l')]
    list: bool,
    /// The password (otherwise asked for on the terminal, or read as one line from stdin).
    #[arg(short = 'p')]
    password: Option<String>,
    /// Rounds / cost for schemes that have one.
    #[arg(short = 'r')]
    rounds: Option<u32>,
    /// Scheme to generate (default CRYPT, which makes BLF-CRYPT as doveadm does).
    #[arg(short = 's', default_value = "CRYPT")]
    scheme: String,
    /// Test this `{SCHEME}hash` against the password instead of generating one.
    #[arg(short = 't')]
    test: Option<String>,
    /// User name, for user-dependent schemes (DIGEST-MD5).
    #[arg(short = 'u', default_value = "")]
    user: String,
    /// Verify the generated hash once more and say so.
    #[arg(short = 'V')]
    verify: bool,
}

/// Exit code: the password does not match.
pub(crate) const EXIT_MISMATCH: u8 = 1;
/// Exit code: bad input.
pub(crate) const EXIT_USAGE: u8 = 2;

fn fatal(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("Fatal: {message}");
    ExitCode::from(code)
}

/// Runs `saslgate pw`.
pub(crate) fn main(args: Args) -> ExitCode {
    if args.list {
        let names: Vec<&str> = Scheme::all().map(Scheme::as_str).collect();
        println!("{}", names.join(" "));
        return ExitCode::SUCCESS;
    }
    let password = match args.password.clone().map(Ok).unwrap_or_else(read_password) {
        Ok(p) => p,
        Err(e) => return fatal(EXIT_USAGE, e),
    };
    match &args.test {
        Some(hash) => test(hash, password.as_bytes(), &args.user),
        None => generate(&args, password.as_bytes()),
    }
}

fn test(hash: &str, password: &[u8], user: &str) -> ExitCode {
    if !hash.starts_with('{') || !hash.contains('}') {
        return fatal(EXIT_USAGE, "Missing {scheme} prefix from hash");
    }
    let stored = match StoredPassword::parse(hash, Scheme::Plain) {
        Ok(s) => s,
        Err(e) => return fatal(EXIT_USAGE, format!("reverse decode check failed: {e}")),
    };
    match stored.verify(password, user) {
        Ok(true) => {
            println!("{hash} (verified)");
            ExitCode::SUCCESS
        }
        Ok(false) => fatal(EXIT_MISMATCH, "reverse password verification check failed: Password mismatch"),
        Err(e) => fatal(EXIT_USAGE, format!("reverse password verification check failed: {e}")),
    }
}

fn generate(args: &Args, password: &[u8]) -> ExitCode {
    // `-s SHA256.HEX` / `-s SHA1.B64`: the scheme with a forced encoding, as doveadm allows.
    let (name, encoding) = match args.scheme.split_once('.') {
        None => (args.scheme.as_str(), None),
        Some((name, suffix)) if suffix.eq_ignore_ascii_case("hex") => (name, Some(Encoding::Hex)),
        Some((name, suffix)) if suffix.eq_ignore_ascii_case("b64") || suffix.eq_ignore_ascii_case("base64") => (name, Some(Encoding::Base64)),
        Some(_) => return fatal(EXIT_USAGE, format!("Unknown scheme: {}", args.scheme)),
    };
    let scheme: Scheme = match name.parse() {
        Ok(s) => s,
        Err(_) => return fatal(EXIT_USAGE, format!("Unknown scheme: {}", args.scheme)),
    };
    if scheme.is_user_dependent() && args.user.is_empty() {
        return fatal(EXIT_USAGE, format!("{} needs a user name: add -u USER", scheme.as_str()));
    }
    let text = match scheme::generate(scheme, password, &args.user, args.rounds) {
        Ok(t) => t,
        Err(e) => return fatal(EXIT_USAGE, e),
    };
    let hash = match encoding {
        None => format!("{{{}}}{text}", scheme.as_str()),
        Some(encoding) => {
            let raw = match StoredPassword::new(scheme, None, &text).decoded() {
                Ok(raw) => raw,
                Err(e) => return fatal(EXIT_USAGE, e),
            };
            let (suffix, body) = match encoding {
                Encoding::Hex => ("HEX", hex::encode(&*raw)),
                _ => ("B64", saslgate::protocol::base64::encode(&raw)),
            };
            format!("{{{}.{suffix}}}{body}", scheme.as_str())
        }
    };
    if args.verify {
        match StoredPassword::parse(&hash, Scheme::Plain).and_then(|s| s.verify(password, &args.user)) {
            Ok(true) => println!("{hash} (verified)"),
            _ => return fatal(EXIT_MISMATCH, "reverse password verification check failed: Password mismatch"),
        }
    } else {
        println!("{hash}");
    }
    ExitCode::SUCCESS
}

/// Asks twice on a terminal (without echo); otherwise reads one line from stdin.
fn read_password() -> Result<String, String> {
    if std::io::stdin().is_terminal() {
        let first = rpassword::prompt_password("Enter new password: ").map_err(|e| e.to_string())?;
        let second = rpassword::prompt_password("Retype new password: ").map_err(|e| e.to_string())?;
        if first != second {
            return Err("Passwords don't match!".into());
        }
        return Ok(first);
    }
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line).map_err(|e| e.to_string())?;
    if line.is_empty() {
        return Err("no password given (use -p, or one line on stdin)".into());
    }
    Ok(line.trim_end_matches(['\n', '\r']).to_owned())
}
