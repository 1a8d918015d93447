//! Reading the `Authorization` header the way the real services do, so a bridge sending the wrong
//! scheme or credentials fails here exactly as it would in production.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;

#[derive(Debug, PartialEq, Eq)]
pub enum Credentials {
    Basic { user: String, password: String },
    Bearer(String),
}

/// `None` when the header is absent or unreadable: both mean "not authenticated".
pub fn credentials(headers: &HeaderMap) -> Option<Credentials> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = STANDARD.decode(rest).ok()?;
        let text = String::from_utf8(decoded).ok()?;
        let (user, password) = text.split_once(':')?;
        Some(Credentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        })
    } else if scheme.eq_ignore_ascii_case("bearer") && !rest.is_empty() {
        Some(Credentials::Bearer(rest.to_owned()))
    } else {
        None
    }
}

pub fn is_basic(creds: &Option<Credentials>, user: &str, password: &str) -> bool {
    matches!(creds, Some(Credentials::Basic { user: u, password: p }) if u == user && p == password)
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;

    use super::*;

    fn headers(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn reads_basic_and_bearer() {
        let basic = format!("Basic {}", STANDARD.encode("a@b.c:tok:en"));
        assert_eq!(
            credentials(&headers(&basic)),
            Some(Credentials::Basic {
                user: "a@b.c".into(),
                password: "tok:en".into()
            })
        );
        assert_eq!(
            credentials(&headers("Bearer abc")),
            Some(Credentials::Bearer("abc".into()))
        );
    }

    #[test]
    fn garbage_is_unauthenticated() {
        assert_eq!(credentials(&headers("Basic !!!")), None);
        assert_eq!(credentials(&headers("Digest x")), None);
        assert_eq!(credentials(&headers("Bearer ")), None);
        assert_eq!(credentials(&HeaderMap::new()), None);
    }
}
