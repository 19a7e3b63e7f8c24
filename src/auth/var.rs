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
    /// `%%`: a literal `%`.
    Percent,
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
            _ => return None,
        })
    }
}

/// A case modifier (`%Lu`, `%Ud`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Case {
    Keep,
    Lower,
    Upper,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(Var, Case),
}

/// A parsed template.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Template {
    source: String,
    pieces: Vec<Piece>,
}

/// A template that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

impl Template {
    /// Parses a template.
    pub fn parse(source: &str) -> Result<Template, TemplateError> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut chars = source.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                text.push(c);
                continue;
            }
            let mut case = Case::Keep;
            let var = loop {
                match chars.next() {
                    Some('L') if case == Case::Keep => case = Case::Lower,
                    Some('U') if case == Case::Keep => case = Case::Upper,
                    Some('{') => {
                        let mut name = String::new();
                        loop {
                            match chars.next() {
                                Some('}') => break,
                                Some(c) => name.push(c),
                                None => return Err(TemplateError(format!("%{{{name} has no closing }}"))),
                            }
                        }
                        break Var::from_long(&name)
                            .ok_or_else(|| TemplateError(format!("unknown variable %{{{name}}}")))?;
                    }
                    Some(c) => {
                        break Var::from_short(c)
                            .ok_or_else(|| TemplateError(format!("unknown variable %{c}")))?;
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
            pieces.push(Piece::Var(var, case));
        }
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { source: source.to_owned(), pieces })
    }

    /// Whether the template refers to `var`.
    pub fn uses(&self, var: Var) -> bool {
        self.pieces.iter().any(|p| matches!(p, Piece::Var(v, _) if *v == var))
    }

    /// Expands the template; `lookup` gives each variable's value (empty when unknown).
    pub fn expand(&self, lookup: impl Fn(Var) -> String) -> String {
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(var, case) => {
                    let value = lookup(*var);
                    match case {
                        Case::Keep => out.push_str(&value),
                        Case::Lower => out.push_str(&value.to_lowercase()),
                        Case::Upper => out.push_str(&value.to_uppercase()),
                    }
                }
            }
        }
        out
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
    fn errors() {
        for bad in ["%", "%q", "%{nope}", "%L", "%LL", "%{user"] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
        assert!(Template::parse("%Lu").unwrap().uses(Var::User));
        assert!(!Template::parse("%d").unwrap().uses(Var::User));
    }
}
