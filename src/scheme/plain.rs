//! PLAIN, CLEAR, CLEARTEXT and PLAIN-TRUNC: the stored value is the password itself.

use super::{ct_eq, Scheme, SchemeError};

/// PLAIN/CLEAR/CLEARTEXT: byte equality, constant-time.
pub(super) fn verify(stored: &[u8], password: &[u8]) -> bool {
    ct_eq(stored, password)
}

/// PLAIN-TRUNC, stored as `<len>-<password>`: for legacy stores that cut passwords to a
/// maximum length. When the stored text is exactly `len` bytes, a longer given password
/// matches if it starts with it; otherwise the whole password must match.
pub(super) fn verify_trunc(stored: &[u8], password: &[u8]) -> Result<bool, SchemeError> {
    let digits = stored.iter().take_while(|b| b.is_ascii_digit()).count();
    let (len_text, rest) = stored.split_at(digits);
    let Some(prefix) = rest.strip_prefix(b"-") else {
        return Err(SchemeError::malformed(Scheme::PlainTrunc, "missing <length>- prefix"));
    };
    // Dovecot accumulates in an unsigned int; an absurd length can only fail to match.
    let trunc_len = std::str::from_utf8(len_text).ok().and_then(|t| t.parse::<usize>().ok()).unwrap_or(usize::MAX);
    if prefix.len() == trunc_len && password.len() >= trunc_len {
        return Ok(password.get(..trunc_len).is_some_and(|head| ct_eq(prefix, head)));
    }
    Ok(ct_eq(prefix, password))
}

/// The plaintext as stored text. Dovecot's PLAIN-TRUNC generate writes no `<len>-` prefix
/// (so its output does not verify); we keep that to match `doveadm pw`.
pub(super) fn generate(scheme: Scheme, password: &[u8]) -> Result<String, SchemeError> {
    String::from_utf8(password.to_vec()).map_err(|_| SchemeError::Unsupported { scheme: scheme.as_str(), why: "a non-UTF-8 password cannot be stored as text" })
}
