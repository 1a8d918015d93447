//! How requests are signed, for every ticket system: `Authorization` headers that never show in
//! logs, the secrets to scrub from errors alongside them, credentials that can be swapped while
//! requests are in flight (rotated secrets), and `Debug` output that names the user but not the
//! secret.

use std::fmt;
use std::sync::RwLock;

use base64::Engine as _;
use reqwest::header::HeaderValue;
use secrecy::{ExposeSecret, SecretString};

use crate::ticket::http::ClientConfigError;

/// `Basic base64(user:secret)`, and the values to scrub from errors: the secret and the encoded
/// pair (a server echoing the header back would show the latter). `what` names the credentials
/// in the error when they cannot be a header.
pub fn basic(
    user: &str,
    secret: &SecretString,
    what: &'static str,
) -> Result<(HeaderValue, Vec<SecretString>), ClientConfigError> {
    let encoded = base64::engine::general_purpose::STANDARD
        .encode(format!("{user}:{}", secret.expose_secret()));
    let header = sensitive_header(&format!("Basic {encoded}")).ok_or_else(|| unfit(what))?;
    Ok((header, vec![secret.clone(), SecretString::from(encoded)]))
}

/// `Bearer <token>`; `None` when the token holds characters a header cannot.
pub fn bearer(token: &SecretString) -> Option<HeaderValue> {
    sensitive_header(&format!("Bearer {}", token.expose_secret()))
}

/// The error for credentials that cannot be sent in a header.
pub fn unfit(what: &'static str) -> ClientConfigError {
    ClientConfigError::Invalid {
        name: what,
        message: "contain characters not allowed in an HTTP header".to_owned(),
    }
}

/// A header value marked sensitive, so HTTP debug output never prints it.
fn sensitive_header(value: &str) -> Option<HeaderValue> {
    let mut header = HeaderValue::from_str(value).ok()?;
    header.set_sensitive(true);
    Some(header)
}

/// Credentials a client signs with, replaced whole when they rotate while requests read them.
#[derive(Debug)]
pub struct Rotating<T>(RwLock<T>);

impl<T: Clone> Rotating<T> {
    pub fn new(value: T) -> Self {
        Rotating(RwLock::new(value))
    }

    /// The credentials now. A writer that panicked left a whole value behind, so a poisoned
    /// lock is still read.
    pub fn current(&self) -> T {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Signs every request from now on with `value`.
    pub fn replace(&self, value: T) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = value;
    }
}

/// `Name { id_field: "id", secret_field: "[REDACTED]" }` (the id left out when there is none):
/// the `Debug` of a credential, which may end up in logs.
pub fn debug_credential(
    f: &mut fmt::Formatter<'_>,
    name: &str,
    id: Option<(&str, &str)>,
    secret_field: &str,
) -> fmt::Result {
    let mut out = f.debug_struct(name);
    if let Some((field, value)) = id {
        out.field(field, &value);
    }
    out.field(secret_field, &"[REDACTED]").finish()
}
