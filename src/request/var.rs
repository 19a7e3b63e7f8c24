//! `%variable` templates, as in Dovecot 2.3 settings (`%Lu`, `/var/mail/%d/%n`, `%{service}`).
//!
//! A template is parsed once, at config load, so a typo is a start-up error naming the setting.
//! Expansion substitutes values once and never re-reads them: a user name that contains `%` is
//! copied as text, never expanded again (CVE-2017-2669).

use std::fmt;

/// A variable a template can refer to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Var {
    /// `%u` / `%{user}`: the full user name.
    User,
    /// `%n` / `%{username}`: the part before the last `@`.
    Username,
    /// `%d` / `%{domain}`: the part after the last `@` (empty without one).
    Domain,
    /// `%s` / `%{service}`.
    Service,
    /// `%l` / `%{lip}`: the local IP.
    LocalIp,
    /// `%r` / `%{rip}`: the remote IP.
    RemoteIp,
    /// `%h` / `%{home}`: the home directory found so far (userdb templates).
    Home,
    /// `%p` / `%{pid}`: the client's process id.
    Pid,
    /// `%m` / `%{mech}`: the SASL mechanism.
    Mech,
    /// `%{session}`.
    Session,
    /// `%a` / `%{lport}`: the local port.
    LocalPort,
    /// `%b` / `%{rport}`: the remote port.
    RemotePort,
    /// `%c` / `%{secured}`: `secured` or `TLS` when the connection is secured, else empty.
    Secured,
    /// `%k` / `%{cert}`: `valid` when the client presented a valid certificate.
    Cert,
    /// `%{real_rip}`: the remote IP before any proxy.
    RealRemoteIp,
    /// `%w` / `%{password}`: the plaintext password of a password login (PLAIN, LOGIN), only
    /// while a passdb's templates are expanded for that login; empty everywhere else. Never
    /// logged: a template using it belongs in fields that go to the client (`pass=` for a proxy).
    Password,
    /// `%%`: a literal `%`.
    Percent,
    /// `%{ldap:attr}`: an attribute of the LDAP entry found (only in an LDAP driver's
    /// `pass_attrs` / `user_attrs` templates); the number indexes [`Template::ldap_attr`].
    Ldap(u16),
}

impl Var {
    fn from_short(c: char) -> Option<Var> {
        Some(match c {
            'u' => Var::User,
            'n' => Var::Username,
            'd' => Var::Domain,
            's' => Var::Service,
            'l' => Var::LocalIp,
            'r' => Var::RemoteIp,
            'h' => Var::Home,
            'p' => Var::Pid,
            'm' => Var::Mech,
            'a' => Var::LocalPort,
            'b' => Var::RemotePort,
            'c' => Var::Secured,
            'k' => Var::Cert,
            'w' => Var::Password,
            '%' => Var::Percent,
            _ => return None,
        })
    }

    fn from_long(name: &str) -> Option<Var> {
        Some(match name {
            "user" => Var::User,
            "username" => Var::Username,
            "domain" => Var::Domain,
            "service" => Var::Service,
            "lip" => Var::LocalIp,
            "rip" => Var::RemoteIp,
            "home" => Var::Home,
            "pid" => Var::Pid,
            "mech" => Var::Mech,
            "session" => Var::Session,
            "lport" => Var::LocalPort,
            "rport" => Var::RemotePort,
            "secured" => Var::Secured,
            "cert" => Var::Cert,
            "real_rip" => Var::RealRemoteIp,
            "password" => Var::Password,
            _ => return None,
        })
    }
}

/// A value modifier, Dovecot 2.3's letters between `%` and the variable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Modifier {
    /// `L`: lower case.
    Lower,
    /// `U`: upper case.
    Upper,
    /// `E`: escape `\` and `"` with a backslash.
    Escape,
    /// `X`: a decimal number as hexadecimal (empty when not a number).
    Hex,
    /// `R`: reversed.
    Reverse,
    /// `M`: the MD5 of the value, in hex.
    Md5,
    /// `D`: a domain as an LDAP DN (`example.org` → `dc=example,dc=org`).
    DomainDn,
    /// `T`: trailing white space removed.
    Trim,
    /// `H`: Dovecot's 32-bit string hash (`str_hash`, the ELF hash) in hex; the slice's length
    /// is a modulus and its offset a zero-padded width (`%4.256Hu` → `00a7`).
    Hash,
    /// `N`: like `H` but from the first 8 bytes of the value's MD5 (better spread).
    NewHash,
}

impl Modifier {
    fn from_char(c: char) -> Option<Modifier> {
        Some(match c {
            'L' => Modifier::Lower,
            'U' => Modifier::Upper,
            'E' => Modifier::Escape,
            'X' => Modifier::Hex,
            'R' => Modifier::Reverse,
            'M' => Modifier::Md5,
            'D' => Modifier::DomainDn,
            'T' => Modifier::Trim,
            'H' => Modifier::Hash,
            'N' => Modifier::NewHash,
            _ => return None,
        })
    }

    fn apply(self, value: String) -> String {
        match self {
            // ASCII (the usual name) in place; otherwise Unicode's full mapping.
            Modifier::Lower if value.is_ascii() => {
                let mut value = value;
                value.make_ascii_lowercase();
                value
            }
            Modifier::Lower => value.to_lowercase(),
            Modifier::Upper if value.is_ascii() => {
                let mut value = value;
                value.make_ascii_uppercase();
                value
            }
            Modifier::Upper => value.to_uppercase(),
            Modifier::Escape => value.replace('\\', "\\\\").replace('"', "\\\""),
            Modifier::Hex => value.parse::<u64>().map(|n| format!("{n:x}")).unwrap_or_default(),
            Modifier::Reverse => value.chars().rev().collect(),
            Modifier::Md5 => {
                use md5::Digest as _;
                hex::encode(md5::Md5::digest(value.as_bytes()))
            }
            Modifier::DomainDn => value.split('.').filter(|p| !p.is_empty()).map(|p| format!("dc={p}")).collect::<Vec<_>>().join(","),
            Modifier::Trim => value.trim_end().to_owned(),
            // Without a slice: no modulus, no padding.
            Modifier::Hash | Modifier::NewHash => self.hash(&value, None),
        }
    }

    /// `H` / `N` with the slice they consume (Dovecot's `m_str_hash` / `m_str_newhash`): the
    /// length is a modulus, a positive offset the width to zero-pad the hex to.
    fn hash(self, value: &str, slice: Option<Slice>) -> String {
        let raw: u64 = match self {
            Modifier::NewHash => {
                use md5::Digest as _;
                let digest = md5::Md5::digest(value.as_bytes());
                digest.iter().take(8).fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
            }
            _ => u64::from(str_hash(value.as_bytes())),
        };
        let modulus = slice.and_then(|s| s.len).filter(|&n| n > 0).and_then(|n| u64::try_from(n).ok());
        let reduced = modulus.map_or(raw, |m| raw % m);
        // Dovecot prints the value as an unsigned int: the low 32 bits.
        let low = reduced & 0xffff_ffff;
        let width = slice.map_or(0, |s| usize::try_from(s.offset.max(0)).unwrap_or(0));
        format!("{low:0width$x}")
    }

    fn is_hash(self) -> bool {
        matches!(self, Modifier::Hash | Modifier::NewHash)
    }
}

/// Dovecot 2.3's `str_hash` (the ELF hash, "from ASU -- from glib").
fn str_hash(bytes: &[u8]) -> u32 {
    let mut h: u32 = 0;
    for &b in bytes {
        h = (h << 4).wrapping_add(u32::from(b));
        let g = h & 0xf000_0000;
        if g != 0 {
            h ^= g >> 24;
            h ^= g;
        }
    }
    h
}

/// `%N…` (first N characters), `%-N…` (last N), `%O.N…` (N characters from offset O).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Slice {
    offset: i64,
    len: Option<usize>,
}

/// The largest offset or length a template may give (`%O.Nu`): larger than any value a request
/// carries (a protocol line is shorter), small enough that no arithmetic on it can overflow.
pub const MAX_SLICE: u32 = 65_535;

impl Slice {
    fn apply(self, value: &str) -> String {
        let n = value.chars().count();
        // `parse_slice` bounds the numbers; the arithmetic saturates anyway, so a Slice built any
        // other way can never panic.
        let magnitude = usize::try_from(self.offset.unsigned_abs()).unwrap_or(usize::MAX);
        let start = if self.offset < 0 { n.saturating_sub(magnitude) } else { magnitude.min(n) };
        let end = match self.len {
            Some(len) => start.saturating_add(len).min(n),
            None => n,
        };
        value.chars().skip(start).take(end.saturating_sub(start)).collect()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var, Option<Slice>, Vec<Modifier>),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
    /// The attribute names `%{ldap:…}` refers to, in order of first use.
    ldap: Vec<String>,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl Template {
    /// Parses a template.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        Template::parse_inner(source, false)
    }

    /// Parses a template of an LDAP driver's attribute map, where `%{ldap:attr}` names an
    /// attribute of the entry found (Dovecot's syntax).
    pub fn parse_ldap(source: &str) -> Result<Template, TemplateError> {
        Template::parse_inner(source, true)
    }

    fn parse_inner(source: &str, allow_ldap: bool) -> Result<Template, TemplateError> {
        let mut ldap: Vec<String> = Vec::new();
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            // `%[-][digits][.digits][modifiers](var|{name})`
            let mut num = String::new();
            while let Some(&c) = chars.peek() {
                if c.is_ascii_digit() || c == '-' || c == '.' {
                    num.push(c);
                    chars.next();
                } else {
                    break;
                }
            }
            let slice = if num.is_empty() { None } else { Some(parse_slice(&num)?) };
            let mut mods = Vec::new();
            let var = loop {
                match chars.next() {
                    Some('{') => {
                        let mut name = String::new();
                        loop {
                            match chars.next() {
                                Some('}') => break,
                                Some(c) => name.push(c),
                                None => return Err(TemplateError(format!("%{{{name} has no closing }}"))),
                            }
                        }
                        if let Some(attr) = name.strip_prefix("ldap:") {
                            if !allow_ldap {
                                return Err(TemplateError(format!("%{{{name}}} is only known in an LDAP driver's pass_attrs / user_attrs")));
                            }
                            if attr.is_empty() || !attr.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b';' || b == b'.') {
                                return Err(TemplateError(format!("%{{{name}}}: `{attr}` is not an LDAP attribute name")));
                            }
                            let index = match ldap.iter().position(|a| a.eq_ignore_ascii_case(attr)) {
                                Some(i) => i,
                                None => {
                                    ldap.push(attr.to_owned());
                                    ldap.len() - 1
                                }
                            };
                            let index = u16::try_from(index).map_err(|_| TemplateError("too many %{ldap:…} attributes".into()))?;
                            break Var::Ldap(index);
                        }
                        break Var::from_long(&name).ok_or_else(|| TemplateError(format!("unknown variable %{{{name}}}")))?;
                    }
                    Some(c) => {
                        if let Some(v) = Var::from_short(c) {
                            break v;
                        }
                        match Modifier::from_char(c) {
                            Some(m) if mods.len() < 4 => mods.push(m),
                            _ => return Err(TemplateError(format!("unknown variable %{c}"))),
                        }
                    }
                    None => return Err(TemplateError("a lone % at the end".into())),
                }
            };
            if var == Var::Percent {
                text.push('%');
                continue;
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Var(var, slice, mods));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { source: source.to_owned(), pieces, ldap })
    }

    /// The attribute `Var::Ldap(index)` stands for.
    pub fn ldap_attr(&self, index: u16) -> Option<&str> {
        self.ldap.get(usize::from(index)).map(String::as_str)
    }

    /// Every attribute `%{ldap:…}` refers to (to request them in the search).
    pub fn ldap_attrs(&self) -> &[String] {
        &self.ldap
    }

    /// Whether the template refers to `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(v, ..) if *v == var))
    }

    /// Whether the result depends on the user (`%u`, `%n`, `%d`): a path with one file per user
    /// or domain, which cannot be checked at start-up or listed.
    pub fn is_per_user(&self) -> bool {
        self.uses(Var::User) || self.uses(Var::Username) || self.uses(Var::Domain)
    }

    /// Expands the template; `lookup` gives each variable's value (empty when unknown).
    pub fn expand(&self, lookup: impl Fn(Var) -> String) -> String {
        self.expand_escaped(lookup, |v| v)
    }

    /// Expands the template, passing every substituted value (after its slice and modifiers)
    /// through `escape`: an LDAP filter escapes `*()\` and NUL there, so a modifier or slice can
    /// never cut an escape sequence apart.
    pub fn expand_escaped(&self, lookup: impl Fn(Var) -> String, escape: impl Fn(String) -> String) -> String {
        // One variable and nothing else (`%Lu`, the default `username_format`): its value is
        // the result, without a copy.
        if let [Piece::Var(var, slice, mods)] = self.pieces.as_slice() {
            return escape(Self::value(*var, *slice, mods, &lookup));
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(var, slice, mods) => out.push_str(&escape(Self::value(*var, *slice, mods, &lookup))),
            }
        }
        out
    }

    /// One variable's value: as Dovecot, modifiers first, then the slice; the first `H`/`N`
    /// consumes the slice as its modulus and padding instead.
    fn value(var: Var, slice: Option<Slice>, mods: &[Modifier], lookup: &impl Fn(Var) -> String) -> String {
        let mut value = lookup(var);
        let mut slice = slice;
        for m in mods {
            value = if m.is_hash() { m.hash(&value, slice.take()) } else { m.apply(value) };
        }
        if let Some(slice) = slice {
            value = slice.apply(&value);
        }
        value
    }

    /// The template as written in the config.
    pub fn source(&self) -> &str {
        &self.source
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_slice(text: &str) -> Result<Slice, TemplateError> {
    let bad = || TemplateError(format!("`%{text}` is not a valid offset/length"));
    let too_big = || TemplateError(format!("`%{text}`: an offset or length above {MAX_SLICE} is not supported"));
    // Digits only, at most 6 of them before the bound check: no overflow while parsing.
    let number = |s: &str| -> Result<u32, TemplateError> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let s = s.trim_start_matches('0');
        if s.len() > 6 {
            return Err(too_big());
        }
        let n: u32 = if s.is_empty() { 0 } else { s.parse().map_err(|_| bad())? };
        if n > MAX_SLICE {
            return Err(too_big());
        }
        Ok(n)
    };
    let signed = |s: &str| -> Result<i64, TemplateError> {
        match s.strip_prefix('-') {
            Some(rest) => Ok(-i64::from(number(rest)?)),
            None => Ok(i64::from(number(s)?)),
        }
    };
    let as_len = |n: u32| usize::try_from(n).map_err(|_| too_big());
    let (offset, len) = match text.split_once('.') {
        Some((o, l)) => (signed(o)?, Some(as_len(number(l)?)?)),
        // `%3u`: the first 3 characters; `%-3u`: the last 3.
        None => match text.strip_prefix('-') {
            Some(rest) => (-i64::from(number(rest)?), None),
            None => (0, Some(as_len(number(text)?)?)),
        },
    };
    Ok(Slice { offset, len })
}

/// Splits `user@domain` at the last `@`: (`%n`, `%d`).
pub fn split_user(user: &str) -> (&str, &str) {
    match user.rfind('@') {
        Some(at) => (&user[..at], &user[at + 1..]),
        None => (user, ""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(t: &str, user: &str) -> String {
        let (n, d) = split_user(user);
        Template::parse(t).unwrap().expand(|v| match v {
            Var::User => user.to_owned(),
            Var::Username => n.to_owned(),
            Var::Domain => d.to_owned(),
            Var::Service => "imap".to_owned(),
            _ => String::new(),
        })
    }

    #[test]
    fn expansion() {
        assert_eq!(expand("%Lu", "Alice@Example.ORG"), "alice@example.org");
        assert_eq!(expand("%u", "Alice"), "Alice");
        assert_eq!(expand("%Uu", "alice"), "ALICE");
        assert_eq!(expand("/var/mail/%d/%n", "a@b@c.org"), "/var/mail/c.org/a@b");
        assert_eq!(expand("%{user}-%{service}", "x"), "x-imap");
        assert_eq!(expand("100%% %Ln", "X@y"), "100% x");
        assert_eq!(expand("plain", "x"), "plain");
    }

    #[test]
    fn user_data_is_never_expanded_again() {
        assert_eq!(expand("%u", "%u%{user}%%"), "%u%{user}%%");
    }

    #[test]
    fn modifiers_and_slices() {
        assert_eq!(expand("%1u", "alice"), "a");
        assert_eq!(expand("%2.2u", "alice"), "ic");
        assert_eq!(expand("%-3u", "alice"), "ice");
        assert_eq!(expand("%10u", "al"), "al");
        assert_eq!(expand("%Ru", "abc"), "cba");
        assert_eq!(expand("%Mu", "alice"), "6384e2b2184bcbf58eccf10ca7a6563c");
        assert_eq!(expand("%Dd", "a@mail.example.org"), "dc=mail,dc=example,dc=org");
        assert_eq!(expand("%Eu", "a\"b\\c"), "a\\\"b\\\\c");
        assert_eq!(expand("%Xu", "255"), "ff");
        assert_eq!(expand("%Xu", "x"), "");
        assert_eq!(expand("%Tu", "a  "), "a");
        assert_eq!(expand("%1Lu", "ALICE"), "a");
        assert_eq!(expand("%{user}@%{service}", "x"), "x@imap");
    }

    #[test]
    fn hash_modifiers_as_dovecot() {
        // Values from Dovecot 2.3's str_hash / m_str_newhash, computed independently.
        assert_eq!(expand("%Hu", "alice"), "682f95");
        assert_eq!(expand("%256Hu", "alice"), "95");
        assert_eq!(expand("%4.256Hu", "alice"), "0095");
        assert_eq!(expand("%Nu", "alice"), "184bcbf5");
        assert_eq!(expand("%256Nu", "alice"), "f5");
        assert_eq!(expand("%{user}/%2.256LHu", "ALICE"), "ALICE/95");
        // Dovecot slices after the modifiers: the first 2 hex digits of the MD5.
        assert_eq!(expand("%2Mu", "alice"), "63");
        assert!(Template::parse("%Hu").unwrap().uses(Var::User));
    }

    #[test]
    fn password_variable() {
        let t = Template::parse("%w|%{password}").unwrap();
        assert!(t.uses(Var::Password));
        assert_eq!(t.expand(|v| if v == Var::Password { "s3cret".into() } else { String::new() }), "s3cret|s3cret");
        assert_eq!(expand("%w", "alice"), "");
    }

    #[test]
    fn errors() {
        for bad in ["%", "%q", "%{nope}", "%L", "%LL", "%{user", "%1.xu", "%--1u", "%LLLLLu"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::parse("%Lu").unwrap().uses(Var::User));
    }

    #[test]
    fn hostile_numbers_are_refused_at_parse() {
        for bad in [
            "%1.18446744073709551615u",
            "%18446744073709551615u",
            "%18446744073709551616u",
            "%-9223372036854775808u",
            "%-9223372036854775808.1u",
            "%9223372036854775807.1u",
            "%1.65536u",
            "%65536u",
            "%-65536u",
            "%0000000000000000000065536u",
            "%1.+2u",
            "%+1u",
            "%1..2u",
            "%.2u",
            "%1.u",
            "%-u",
        ] {
            let err = Template::parse(bad).expect_err(bad);
            assert!(err.to_string().contains('%'), "{bad}: {err}");
        }
        let big = Template::parse("%1.18446744073709551615u").unwrap_err().to_string();
        assert!(big.contains("65535"), "{big}");
    }

    #[test]
    fn bounded_numbers_expand_without_overflow() {
        assert_eq!(expand("%65535.65535u", "alice"), "");
        assert_eq!(expand("%1.65535u", "alice"), "lice");
        assert_eq!(expand("%-65535.65535u", "alice"), "alice");
        assert_eq!(expand("%-65535u", "alice"), "alice");
        assert_eq!(expand("%00003u", "alice"), "ali");
        assert_eq!(expand("%0u", "alice"), "");
        assert_eq!(expand("%-2.5u", "alice"), "ce");
        // A Slice made by hand with the extremes saturates instead of panicking.
        let s = Slice { offset: i64::MIN, len: Some(usize::MAX) };
        assert_eq!(s.apply("abc"), "abc");
        let s = Slice { offset: i64::MAX, len: Some(usize::MAX) };
        assert_eq!(s.apply("abc"), "");
        let s = Slice { offset: 1, len: Some(usize::MAX) };
        assert_eq!(s.apply("abc"), "bc");
        assert!(!Template::parse("%d").unwrap().uses(Var::User));
    }

    #[test]
    fn ldap_attributes() {
        assert!(Template::parse("%{ldap:uid}").is_err(), "only in LDAP attribute maps");
        let t = Template::parse_ldap("/var/mail/%{ldap:uid}/%{ldap:mail}/%{LDAP:x}%{ldap:UID}").unwrap_err();
        assert!(t.to_string().contains("LDAP:x"), "{t}");
        let t = Template::parse_ldap("/var/mail/%{ldap:uid}/%Lu/%{ldap:UID}").unwrap();
        assert_eq!(t.ldap_attrs(), ["uid"]);
        let out = t.expand(|v| match v {
            Var::Ldap(i) => format!("<{}>", t.ldap_attr(i).unwrap()),
            Var::User => "Bob".into(),
            _ => String::new(),
        });
        assert_eq!(out, "/var/mail/<uid>/bob/<uid>");
        assert!(Template::parse_ldap("%{ldap:}").is_err());
        assert!(Template::parse_ldap("%{ldap:a)(b}").is_err());
    }

    #[test]
    fn escaping_applies_after_modifiers() {
        let t = Template::parse("(uid=%2u)").unwrap();
        assert_eq!(t.expand_escaped(|_| "*)x".into(), |v| v.replace('*', "\\2a").replace(')', "\\29")), "(uid=\\2a\\29)");
    }
}
