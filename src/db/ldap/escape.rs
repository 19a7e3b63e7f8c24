//! Escaping of values substituted into LDAP filters (RFC 4515) and DNs (RFC 4514).
//!
//! A user name is client input: `*`, `(`, `)`, `\` and NUL in it must stay literal, so a name like
//! `alice)(uid=*` can never widen a filter or match another entry.

/// RFC 4515 §3: `*`, `(`, `)`, `\` and NUL become `\2a`, `\28`, `\29`, `\5c`, `\00`. Everything
/// else (UTF-8 included) is kept as it is.
pub fn filter_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// RFC 4514 §2.4: an attribute value inside a DN. `,+"\<>;=` are backslash-escaped, a leading
/// `#` or space and a trailing space too, NUL as `\00`.
pub fn dn_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        match c {
            ',' | '+' | '"' | '\\' | '<' | '>' | ';' | '=' => {
                out.push('\\');
                out.push(c);
            }
            '\0' => out.push_str("\\00"),
            '#' if i == 0 => out.push_str("\\#"),
            ' ' if i == 0 || i == last => out.push_str("\\ "),
            c => out.push(c),
        }
    }
    out
}

/// No escaping (attribute templates: the value is a field, not a filter).
pub fn no_escape(value: &str) -> String {
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_stay_literal() {
        assert_eq!(filter_escape("alice"), "alice");
        assert_eq!(filter_escape("*"), "\\2a");
        assert_eq!(filter_escape("alice)(uid=*"), "alice\\29\\28uid=\\2a");
        assert_eq!(filter_escape("*)(|(uid=*"), "\\2a\\29\\28|\\28uid=\\2a");
        assert_eq!(filter_escape("a\\b\0"), "a\\5cb\\00");
        assert_eq!(filter_escape("dän€"), "dän€");
        for hostile in ["*", "alice)(uid=*", "*)(|(uid=*", "al*", "\\", "a\0b", "(", ")"] {
            let f = format!("(uid={})", filter_escape(hostile));
            assert!(ldap3::parse_filter(&f).is_ok(), "{f}");
            assert!(!f[5..f.len() - 1].contains(['*', '(', ')', '\0']), "{f}");
        }
    }

    #[test]
    fn dn_values_stay_literal() {
        assert_eq!(dn_escape("alice"), "alice");
        assert_eq!(dn_escape("a,ou=x"), "a\\,ou\\=x");
        assert_eq!(dn_escape(" #a "), "\\ #a\\ ");
        assert_eq!(dn_escape("#a"), "\\#a");
        assert_eq!(dn_escape("a+b\"<>;\\\0"), "a\\+b\\\"\\<\\>\\;\\\\\\00");
    }
}
