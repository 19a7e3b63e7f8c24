//! A thin FFI to Linux-PAM (libpam): one whole PAM transaction per call of [`run`].
//!
//! The transaction follows Dovecot's `passdb-pam.c`: `pam_start` (or `pam_start_confdir` when a
//! config folder is given), the items `PAM_RHOST` (the client's address), `PAM_RUSER` (the user)
//! and `PAM_TTY` (`dovecot`, for `pam_access` rules written for Dovecot), then
//! `pam_authenticate`, `pam_setcred(PAM_ESTABLISH_CRED)` when asked, `pam_acct_mgmt`,
//! `pam_open_session` + `pam_close_session` when asked, the final `PAM_USER` (a module may
//! have canonicalised the name), and `pam_end`.
//!
//! The conversation answers `PAM_PROMPT_ECHO_OFF` with the password and `PAM_PROMPT_ECHO_ON`
//! with the user name (Dovecot does the same), and keeps the text of `PAM_ERROR_MSG` and
//! `PAM_TEXT_INFO` messages (and the last password prompt, which is what Dovecot shows with
//! `failure_show_msg`). Everything handed to PAM is `malloc`ed, as PAM frees it; every copy of
//! the password this module makes is zeroed before it is freed.
//!
//! [`run`] blocks for as long as the PAM modules do: call it on a thread of its own (see
//! `super::PamPool`), never on the async reactor.

// This is the one module of the crate that needs `unsafe`: calling a C library and handing it
// a callback cannot be done otherwise. The crate denies `unsafe_code` everywhere else.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};
use std::os::unix::ffi::OsStrExt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::Mutex;

use libc::{c_char, c_int, c_void};
use zeroize::Zeroizing;

// Return codes (Linux-PAM, <security/_pam_types.h>).
pub(crate) const PAM_SUCCESS: c_int = 0;
pub(crate) const PAM_OPEN_ERR: c_int = 1;
pub(crate) const PAM_SYMBOL_ERR: c_int = 2;
pub(crate) const PAM_SERVICE_ERR: c_int = 3;
pub(crate) const PAM_SYSTEM_ERR: c_int = 4;
pub(crate) const PAM_BUF_ERR: c_int = 5;
#[cfg(test)]
pub(crate) const PAM_PERM_DENIED: c_int = 6;
pub(crate) const PAM_AUTH_ERR: c_int = 7;
pub(crate) const PAM_AUTHINFO_UNAVAIL: c_int = 9;
pub(crate) const PAM_USER_UNKNOWN: c_int = 10;
#[cfg(test)]
pub(crate) const PAM_MAXTRIES: c_int = 11;
pub(crate) const PAM_NEW_AUTHTOK_REQD: c_int = 12;
pub(crate) const PAM_ACCT_EXPIRED: c_int = 13;
#[cfg(test)]
pub(crate) const PAM_SESSION_ERR: c_int = 14;
pub(crate) const PAM_CRED_UNAVAIL: c_int = 15;
pub(crate) const PAM_CRED_EXPIRED: c_int = 16;
pub(crate) const PAM_CONV_ERR: c_int = 19;
pub(crate) const PAM_AUTHTOK_EXPIRED: c_int = 27;
pub(crate) const PAM_TRY_AGAIN: c_int = 24;
pub(crate) const PAM_ABORT: c_int = 26;
pub(crate) const PAM_MODULE_UNKNOWN: c_int = 28;

// Items.
const PAM_USER: c_int = 2;
const PAM_TTY: c_int = 3;
const PAM_RHOST: c_int = 4;
const PAM_RUSER: c_int = 8;

// Message styles.
const PAM_PROMPT_ECHO_OFF: c_int = 1;
const PAM_PROMPT_ECHO_ON: c_int = 2;
const PAM_ERROR_MSG: c_int = 3;
const PAM_TEXT_INFO: c_int = 4;

// Flags.
const PAM_DISALLOW_NULL_AUTHTOK: c_int = 0x0001;
const PAM_ESTABLISH_CRED: c_int = 0x0002;
const PAM_DELETE_CRED: c_int = 0x0004;

/// The `PAM_TTY` item Dovecot sets (`pam_access` rules are written against it).
const TTY: &CStr = c"dovecot";

/// At most this many module messages are kept, each cut to [`MAX_MESSAGE`] bytes: a chatty
/// module cannot make the daemon hold much.
const MAX_MESSAGES: usize = 8;
const MAX_MESSAGE: usize = 256;

#[repr(C)]
struct PamHandle {
    _opaque: [u8; 0],
}

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = extern "C" fn(c_int, *mut *const PamMessage, *mut *mut PamResponse, *mut c_void) -> c_int;

#[repr(C)]
struct PamConv {
    conv: ConvFn,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_start(service: *const c_char, user: *const c_char, conv: *const PamConv, pamh: *mut *mut PamHandle) -> c_int;
    fn pam_start_confdir(service: *const c_char, user: *const c_char, conv: *const PamConv, confdir: *const c_char, pamh: *mut *mut PamHandle) -> c_int;
    fn pam_end(pamh: *mut PamHandle, status: c_int) -> c_int;
    fn pam_set_item(pamh: *mut PamHandle, item_type: c_int, item: *const c_void) -> c_int;
    fn pam_get_item(pamh: *const PamHandle, item_type: c_int, item: *mut *const c_void) -> c_int;
    fn pam_authenticate(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_setcred(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_acct_mgmt(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_open_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_close_session(pamh: *mut PamHandle, flags: c_int) -> c_int;
    fn pam_strerror(pamh: *mut PamHandle, errnum: c_int) -> *const c_char;
}

/// One PAM transaction's inputs.
pub(crate) struct Params<'a> {
    pub(crate) service: &'a str,
    pub(crate) user: &'a str,
    pub(crate) password: &'a [u8],
    pub(crate) rhost: Option<&'a str>,
    pub(crate) config_dir: Option<&'a Path>,
    pub(crate) setcred: bool,
    pub(crate) session: bool,
}

/// The PAM call a transaction ended at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    /// Bad input before PAM was called (a NUL byte in a name or the password).
    Input,
    Start,
    Authenticate,
    Setcred,
    AcctMgmt,
    OpenSession,
    CloseSession,
    GetUser,
    End,
}

impl Stage {
    pub(crate) fn call(self) -> &'static str {
        match self {
            Stage::Input => "input",
            Stage::Start => "pam_start()",
            Stage::Authenticate => "pam_authenticate()",
            Stage::Setcred => "pam_setcred()",
            Stage::AcctMgmt => "pam_acct_mgmt()",
            Stage::OpenSession => "pam_open_session()",
            Stage::CloseSession => "pam_close_session()",
            Stage::GetUser => "pam_get_item(PAM_USER)",
            Stage::End => "pam_end()",
        }
    }
}

/// What a transaction did: the stage it ended at and that call's status (`PAM_SUCCESS` when
/// every step passed), with PAM's text for it and the messages the modules sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) stage: Stage,
    pub(crate) status: c_int,
    /// `pam_strerror` of `status`.
    pub(crate) error: String,
    /// `PAM_ERROR_MSG` and `PAM_TEXT_INFO` texts, in order.
    pub(crate) messages: Vec<String>,
    /// The last password prompt's text (Dovecot's `failure_show_msg` reason).
    pub(crate) prompt: Option<String>,
    /// `PAM_USER` after a success, when it differs from the user name given.
    pub(crate) user: Option<String>,
}

impl Report {
    fn input(why: &str) -> Report {
        Report { stage: Stage::Input, status: PAM_AUTH_ERR, error: why.to_owned(), messages: Vec::new(), prompt: None, user: None }
    }
}

/// What the conversation function answers with and collects. PAM holds a pointer to it from
/// `pam_start` to `pam_end`.
struct Conversation {
    /// NUL-terminated.
    user: CString,
    /// NUL-terminated; zeroed on drop.
    password: Zeroizing<Vec<u8>>,
    /// Filled by the callback (a Mutex rather than a RefCell: PAM calls back on this thread,
    /// but the Mutex makes the shared reference the callback gets obviously sound).
    collected: Mutex<Collected>,
}

#[derive(Default)]
struct Collected {
    messages: Vec<String>,
    prompt: Option<String>,
}

fn bounded_text(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: PAM hands us NUL-terminated strings that live for the duration of the callback;
    // we copy the text out before returning.
    let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
    let mut text = String::from_utf8_lossy(&bytes[..bytes.len().min(MAX_MESSAGE)]).into_owned();
    text.retain(|c| !c.is_control());
    Some(text.trim().to_owned())
}

/// A malloc'ed copy of a NUL-terminated byte string; `None` when malloc fails.
fn malloc_copy(with_nul: &[u8]) -> Option<*mut c_char> {
    // SAFETY: malloc with a non-zero size; the result is checked for NULL before use.
    let p = unsafe { libc::malloc(with_nul.len().max(1)) }.cast::<u8>();
    if p.is_null() {
        return None;
    }
    // SAFETY: `p` points to `with_nul.len()` freshly allocated bytes that cannot overlap the
    // source slice.
    unsafe { ptr::copy_nonoverlapping(with_nul.as_ptr(), p, with_nul.len()) };
    Some(p.cast())
}

/// Frees a response array we built, zeroing every answer first (one may be the password).
///
/// # Safety
/// `resp` must come from `calloc(n, size_of::<PamResponse>())` in [`converse`], with each
/// `resp` field NULL or a NUL-terminated string from [`malloc_copy`].
unsafe fn free_responses(resp: *mut PamResponse, n: usize) {
    for i in 0..n {
        // SAFETY: `i < n`, within the array the caller promises.
        let r = unsafe { &mut *resp.add(i) };
        if !r.resp.is_null() {
            // SAFETY: a NUL-terminated malloc'ed string of ours: zero its bytes, then free it.
            unsafe {
                let len = libc::strlen(r.resp);
                ptr::write_bytes(r.resp, 0, len);
                libc::free(r.resp.cast());
            }
            r.resp = ptr::null_mut();
        }
    }
    // SAFETY: the array itself came from calloc.
    unsafe { libc::free(resp.cast()) };
}

/// The conversation callback PAM calls. It never unwinds: a panic becomes `PAM_CONV_ERR`.
extern "C" fn conversation(num_msg: c_int, msg: *mut *const PamMessage, resp: *mut *mut PamResponse, appdata: *mut c_void) -> c_int {
    catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `appdata` is the pointer to the `Conversation` we gave pam_start, alive (and
        // not moved: it is boxed) until pam_end returns; PAM calls back only in between. We only
        // take a shared reference; its mutable part is behind a Mutex.
        let ctx = unsafe { &*appdata.cast::<Conversation>() };
        // SAFETY: PAM passes `num_msg` valid message pointers in `msg` (Linux-PAM's layout: an
        // array of pointers) and a valid `resp` out-pointer, all alive during the callback.
        unsafe { converse(ctx, num_msg, msg, resp) }
    }))
    .unwrap_or(PAM_CONV_ERR)
}

/// # Safety
/// As PAM promises a conversation function: `msg` holds `num_msg` valid pointers to messages,
/// `resp` is a valid place for the answer array.
unsafe fn converse(ctx: &Conversation, num_msg: c_int, msg: *mut *const PamMessage, resp: *mut *mut PamResponse) -> c_int {
    if resp.is_null() || msg.is_null() {
        return PAM_CONV_ERR;
    }
    // SAFETY: `resp` is a valid out-pointer (checked non-null above).
    unsafe { *resp = ptr::null_mut() };
    let n = match usize::try_from(num_msg) {
        Ok(n) if n > 0 => n,
        _ => return PAM_CONV_ERR,
    };
    // SAFETY: calloc with a non-zero count; checked for NULL. Zeroed memory is a valid array of
    // PamResponse (NULL strings, retcode 0).
    let answers = unsafe { libc::calloc(n, size_of::<PamResponse>()) }.cast::<PamResponse>();
    if answers.is_null() {
        return PAM_BUF_ERR;
    }
    let mut collected = ctx.collected.lock().unwrap_or_else(|e| e.into_inner());
    for i in 0..n {
        // SAFETY: `i < num_msg`; PAM guarantees each `msg[i]` points to a valid message.
        let m = unsafe { &**msg.add(i) };
        let answer = match m.msg_style {
            PAM_PROMPT_ECHO_OFF => {
                collected.prompt = bounded_text(m.msg);
                malloc_copy(&ctx.password)
            }
            // PAM asks for the user: it normally knows it already from pam_start.
            PAM_PROMPT_ECHO_ON => malloc_copy(ctx.user.as_bytes_with_nul()),
            PAM_ERROR_MSG | PAM_TEXT_INFO => {
                if let Some(text) = bounded_text(m.msg) {
                    if !text.is_empty() && collected.messages.len() < MAX_MESSAGES {
                        collected.messages.push(text);
                    }
                }
                Some(ptr::null_mut())
            }
            _ => None,
        };
        match answer {
            Some(p) => {
                // SAFETY: `i < n`, inside the array calloc gave us.
                unsafe { (*answers.add(i)).resp = p };
            }
            None => {
                // SAFETY: the array and its strings are ours, built above.
                unsafe { free_responses(answers, n) };
                return PAM_CONV_ERR;
            }
        }
    }
    // SAFETY: `resp` is valid; PAM takes ownership of the array and frees it.
    unsafe { *resp = answers };
    PAM_SUCCESS
}

/// A started transaction; `pam_end` runs on drop, with the last status.
struct Handle {
    pamh: *mut PamHandle,
    last: c_int,
}

impl Handle {
    fn strerror(&self, status: c_int) -> String {
        // SAFETY: pam_strerror accepts any handle (Linux-PAM does not use it) and returns a
        // static NUL-terminated string, or NULL.
        let p = unsafe { pam_strerror(self.pamh, status) };
        if p.is_null() {
            return format!("PAM error {status}");
        }
        // SAFETY: a non-null static C string from libpam.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }

    fn set_item(&self, item: c_int, value: &CStr) {
        // SAFETY: a live handle and a NUL-terminated string; PAM copies string items. The items
        // we set cannot fail in a way that matters (Dovecot ignores the result too).
        let _ = unsafe { pam_set_item(self.pamh, item, value.as_ptr().cast()) };
    }

    /// Runs one step; records its status for pam_end.
    fn step(&mut self, f: unsafe extern "C" fn(*mut PamHandle, c_int) -> c_int, flags: c_int) -> c_int {
        // SAFETY: a live handle from a successful pam_start; `f` is one of libpam's
        // (pamh, flags) calls.
        let status = unsafe { f(self.pamh, flags) };
        self.last = status;
        status
    }

    fn user(&self) -> Result<Option<String>, c_int> {
        let mut item: *const c_void = ptr::null();
        // SAFETY: a live handle and a valid out-pointer.
        let status = unsafe { pam_get_item(self.pamh, PAM_USER, &mut item) };
        if status != PAM_SUCCESS {
            return Err(status);
        }
        if item.is_null() {
            return Ok(None);
        }
        // SAFETY: PAM_USER is a NUL-terminated string owned by the handle, alive until
        // pam_end; we copy it out at once.
        Ok(Some(unsafe { CStr::from_ptr(item.cast::<c_char>()) }.to_string_lossy().into_owned()))
    }

    /// Ends the transaction; the status of pam_end.
    fn end(mut self) -> c_int {
        let pamh = std::mem::replace(&mut self.pamh, ptr::null_mut());
        // SAFETY: the handle is live and ended exactly once (drop then sees NULL).
        unsafe { pam_end(pamh, self.last) }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if !self.pamh.is_null() {
            // SAFETY: a live handle, ended exactly once.
            unsafe { pam_end(self.pamh, self.last) };
        }
    }
}

/// Runs one whole PAM transaction. Blocks for as long as the modules do.
pub(crate) fn run(p: &Params<'_>) -> Report {
    let (Ok(service), Ok(user)) = (CString::new(p.service), CString::new(p.user)) else {
        return Report::input("a NUL byte in the service or user name");
    };
    if p.password.contains(&0) {
        return Report::input("a NUL byte in the password");
    }
    let mut password = Zeroizing::new(Vec::with_capacity(p.password.len() + 1));
    password.extend_from_slice(p.password);
    password.push(0);
    let config_dir = match p.config_dir.map(|d| CString::new(d.as_os_str().as_bytes())).transpose() {
        Ok(d) => d,
        Err(_) => return Report::input("a NUL byte in config_dir"),
    };
    let rhost = p.rhost.and_then(|h| CString::new(h).ok());

    let ctx = Box::new(Conversation { user: user.clone(), password, collected: Mutex::new(Collected::default()) });
    let conv = PamConv { conv: conversation, appdata_ptr: ptr::from_ref::<Conversation>(&ctx).cast_mut().cast() };
    let mut pamh: *mut PamHandle = ptr::null_mut();
    let status = match &config_dir {
        // SAFETY: NUL-terminated strings and a conversation struct that outlive the call (PAM
        // copies `conv`; its appdata, the boxed `ctx`, lives until after pam_end below), and a
        // valid out-pointer for the handle.
        Some(dir) => unsafe { pam_start_confdir(service.as_ptr(), user.as_ptr(), &conv, dir.as_ptr(), &mut pamh) },
        // SAFETY: as above, without a config folder.
        None => unsafe { pam_start(service.as_ptr(), user.as_ptr(), &conv, &mut pamh) },
    };
    if status != PAM_SUCCESS || pamh.is_null() {
        let h = Handle { pamh: ptr::null_mut(), last: status };
        let error = h.strerror(status);
        if !pamh.is_null() {
            // SAFETY: a handle pam_start returned along with a failure is ended once.
            unsafe { pam_end(pamh, status) };
        }
        return Report {
            stage: Stage::Start,
            status: if status == PAM_SUCCESS { PAM_SYSTEM_ERR } else { status },
            error,
            messages: Vec::new(),
            prompt: None,
            user: None,
        };
    }
    let mut h = Handle { pamh, last: PAM_SUCCESS };
    if let Some(rhost) = &rhost {
        h.set_item(PAM_RHOST, rhost);
    }
    h.set_item(PAM_RUSER, &user);
    h.set_item(PAM_TTY, TTY);

    let (stage, status, final_user) = transaction(&mut h, p);
    let error = h.strerror(status);
    let end_status = h.end();
    let collected = std::mem::take(&mut *ctx.collected.lock().unwrap_or_else(|e| e.into_inner()));
    // `ctx` (and the password copy in it, zeroed) is dropped only now, after pam_end.
    drop(ctx);
    let mut report = Report { stage, status, error, messages: collected.messages, prompt: collected.prompt, user: None };
    if status == PAM_SUCCESS && end_status != PAM_SUCCESS {
        report.stage = Stage::End;
        report.status = end_status;
        report.error = format!("PAM error {end_status}");
    } else if status == PAM_SUCCESS {
        report.user = final_user.filter(|u| u != p.user);
    }
    report
}

/// The PAM calls between start and end, in Dovecot's order.
fn transaction(h: &mut Handle, p: &Params<'_>) -> (Stage, c_int, Option<String>) {
    // No empty passwords, whatever a module's `nullok` says: a mail login needs one.
    let status = h.step(pam_authenticate, PAM_DISALLOW_NULL_AUTHTOK);
    if status != PAM_SUCCESS {
        return (Stage::Authenticate, status, None);
    }
    if p.setcred {
        let status = h.step(pam_setcred, PAM_ESTABLISH_CRED);
        if status != PAM_SUCCESS {
            return (Stage::Setcred, status, None);
        }
    }
    let status = h.step(pam_acct_mgmt, 0);
    let result = if status != PAM_SUCCESS {
        (Stage::AcctMgmt, status, None)
    } else if p.session && h.step(pam_open_session, 0) != PAM_SUCCESS {
        (Stage::OpenSession, h.last, None)
    } else if p.session && h.step(pam_close_session, 0) != PAM_SUCCESS {
        (Stage::CloseSession, h.last, None)
    } else {
        match h.user() {
            Ok(user) => (Stage::End, PAM_SUCCESS, user),
            Err(status) => {
                h.last = status;
                (Stage::GetUser, status, None)
            }
        }
    };
    if p.setcred {
        // Credentials were established above; remove them again (the result does not matter).
        let last = h.last;
        let _ = h.step(pam_setcred, PAM_DELETE_CRED);
        h.last = last;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_bytes_never_reach_pam() {
        let p = Params { service: "x", user: "a\0b", password: b"pw", rhost: None, config_dir: None, setcred: false, session: false };
        assert_eq!(run(&p).stage, Stage::Input);
        let p = Params { service: "x", user: "ab", password: b"p\0w", rhost: None, config_dir: None, setcred: false, session: false };
        assert_eq!(run(&p).stage, Stage::Input);
    }

    #[test]
    fn free_responses_zeroes_and_frees() {
        // SAFETY: calloc of two zeroed responses, checked for NULL below.
        let resp = unsafe { libc::calloc(2, size_of::<PamResponse>()) }.cast::<PamResponse>();
        assert!(!resp.is_null());
        // SAFETY: `resp` is a valid array of two responses.
        unsafe { (*resp).resp = malloc_copy(b"secret\0").unwrap() };
        // SAFETY: the array and its one string were built as free_responses expects.
        unsafe { free_responses(resp, 2) };
    }
}
