//! The chain rules of a passdb or userdb block, as validated data: which requests a block
//! serves, what each of its results does, and the field templates around its answer. The
//! request layer (`auth::chain`) walks the chain by these rules.

use crate::request::var::Template;

/// What a rule does with a passdb's result. Read from the YAML by name (`return-ok`, …):
/// serde refuses any other word with the list of valid ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Rule {
    /// Stop; the outcome is what the chain has decided so far (or this result).
    Return,
    /// Stop with success.
    ReturnOk,
    /// Stop with failure.
    ReturnFail,
    /// Go on with the next passdb (after an OK the password counts as verified).
    Continue,
    /// Go on, and count as success so far.
    ContinueOk,
    /// Go on, and count as failure so far.
    ContinueFail,
}

/// When a passdb is skipped, by what the chain knows so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// Never skipped.
    Never,
    /// Skipped once the password is verified.
    Authenticated,
    /// Skipped while the password is not yet verified.
    Unauthenticated,
}

/// Which requests a passdb serves, by mechanism.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MechFilter {
    /// Every mechanism and mechanism-less lookups (no `mechanisms` setting).
    Any,
    /// Only these (upper-case) mechanisms; `lookups` when the list holds `none`.
    Only {
        /// Mechanism names, upper case.
        mechs: Vec<String>,
        /// Whether lookups without a mechanism (master PASS) are served.
        lookups: bool,
    },
}

impl MechFilter {
    pub(crate) fn allows(&self, mech: Option<&str>) -> bool {
        match (self, mech) {
            (MechFilter::Any, _) => true,
            (MechFilter::Only { lookups, .. }, None) => *lookups,
            (MechFilter::Only { mechs, .. }, Some(m)) => mechs.iter().any(|x| x.eq_ignore_ascii_case(m)),
        }
    }
}

/// `username_filter`: wildcard patterns (`*`, `?`); a `!` pattern that matches vetoes, and
/// when there are positive patterns one of them must match.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsernameFilter {
    allow: Vec<String>,
    deny: Vec<String>,
}

impl UsernameFilter {
    /// Parses a space- or comma-separated pattern list.
    pub fn parse(text: &str) -> UsernameFilter {
        let mut f = UsernameFilter::default();
        for p in text.split([' ', ',']).filter(|p| !p.is_empty()) {
            match p.strip_prefix('!') {
                Some(neg) => f.deny.push(neg.to_owned()),
                None => f.allow.push(p.to_owned()),
            }
        }
        f
    }

    pub(crate) fn allows(&self, user: &str) -> bool {
        if self.deny.iter().any(|p| wildcard(p, user)) {
            return false;
        }
        self.allow.is_empty() || self.allow.iter().any(|p| wildcard(p, user))
    }
}

/// `*` matches any run, `?` one character; everything else literally. Iterative, so a hostile
/// user name cannot make it recurse deeply.
pub fn wildcard(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            pi = sp + 1;
            ti = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The rules of one passdb block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PassdbRules {
    /// A label for logs (`name`, default the driver).
    pub name: String,
    /// `mechanisms`.
    pub mechanisms: MechFilter,
    /// `username_filter`.
    pub username_filter: UsernameFilter,
    /// `skip`.
    pub skip: Skip,
    /// `result_success` (default `return-ok`; `pass: true` makes it `continue`).
    pub result_success: Rule,
    /// `result_failure` (default `continue`).
    pub result_failure: Rule,
    /// `result_internalfail` (default `continue`).
    pub result_internalfail: Rule,
    /// `deny`: a user found here is refused.
    pub deny: bool,
    /// `master`: this passdb verifies master users (and only them).
    pub master: bool,
    /// `default_fields`: set before the driver's fields.
    pub default_fields: Vec<(String, Template)>,
    /// `override_fields`: set after the driver's fields; they win.
    pub override_fields: Vec<(String, Template)>,
}

impl Default for PassdbRules {
    fn default() -> Self {
        PassdbRules {
            name: String::new(),
            mechanisms: MechFilter::Any,
            username_filter: UsernameFilter::default(),
            skip: Skip::Never,
            result_success: Rule::ReturnOk,
            result_failure: Rule::Continue,
            result_internalfail: Rule::Continue,
            deny: false,
            master: false,
            default_fields: Vec::new(),
            override_fields: Vec::new(),
        }
    }
}

impl PassdbRules {
    pub(crate) fn skipped(&self, mech: Option<&str>, user: &str, verified: bool) -> bool {
        !self.mechanisms.allows(mech)
            || !self.username_filter.allows(user)
            || (self.skip == Skip::Authenticated && verified)
            || (self.skip == Skip::Unauthenticated && !verified)
    }
}

/// When a userdb is skipped, by what the chain found so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UserdbSkip {
    /// Never skipped.
    Never,
    /// Skipped once a userdb found the user.
    Found,
    /// Skipped while no userdb found the user.
    NotFound,
}

/// The rules of one userdb block (Dovecot's userdb chain: found/notfound).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserdbRules {
    /// `skip`.
    pub skip: UserdbSkip,
    /// `result_success` (default `return-ok`).
    pub result_success: Rule,
    /// `result_failure`: user not found (default `continue`).
    pub result_failure: Rule,
    /// `result_internalfail` (default `continue`).
    pub result_internalfail: Rule,
    /// `default_fields`.
    pub default_fields: Vec<(String, Template)>,
    /// `override_fields`.
    pub override_fields: Vec<(String, Template)>,
}

impl Default for UserdbRules {
    fn default() -> Self {
        UserdbRules {
            skip: UserdbSkip::Never,
            result_success: Rule::ReturnOk,
            result_failure: Rule::Continue,
            result_internalfail: Rule::Continue,
            default_fields: Vec::new(),
            override_fields: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        for (p, t, want) in [
            ("*", "", true),
            ("*@example.com", "a@example.com", true),
            ("*@example.com", "a@example.org", false),
            ("a?c", "abc", true),
            ("a?c", "ac", false),
            ("*a*b*", "xxaxxbxx", true),
            ("*a*b*", "xxbxxaxx", false),
            ("", "", true),
            ("", "x", false),
        ] {
            assert_eq!(wildcard(p, t), want, "{p} {t}");
        }
        // Hostile patterns and names finish quickly (no backtracking blow-up) and answer right.
        let many_a = "a".repeat(5000);
        let t = std::time::Instant::now();
        assert!(wildcard(&"*a".repeat(200), &many_a));
        assert!(!wildcard(&format!("{}b", "*a".repeat(200)), &many_a));
        assert!(t.elapsed() < std::time::Duration::from_secs(5), "{:?}", t.elapsed());
    }

    #[test]
    fn username_filters() {
        let f = UsernameFilter::parse("*@example.com !bad@example.com");
        assert!(f.allows("a@example.com"));
        assert!(!f.allows("bad@example.com"));
        assert!(!f.allows("a@other.org"));
        let f = UsernameFilter::parse("!root");
        assert!(f.allows("alice") && !f.allows("root"));
        assert!(UsernameFilter::parse("").allows("anyone"));
    }

    #[test]
    fn mech_filters() {
        let f = MechFilter::Only { mechs: vec!["PLAIN".into()], lookups: false };
        assert!(f.allows(Some("plain")) && !f.allows(Some("LOGIN")) && !f.allows(None));
        let f = MechFilter::Only { mechs: vec![], lookups: true };
        assert!(f.allows(None) && !f.allows(Some("PLAIN")));
        assert!(MechFilter::Any.allows(None));
    }
}
