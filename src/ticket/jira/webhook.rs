//! Jira webhook verification: Jira signs the raw body of each webhook with the webhook's secret
//! (`JIRA_WEBHOOK_SECRET`) as `X-Hub-Signature: sha256=<hex HMAC-SHA256>`. The route that
//! receives it is [`crate::sync::webhooks`].

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Header carrying Jira's body signature.
pub const SIGNATURE_HEADER: &str = "x-hub-signature";

/// The secret Jira signs webhook bodies with.
#[derive(Clone)]
pub struct SigningKey(SecretString);

impl SigningKey {
    pub fn new(secret: SecretString) -> SigningKey {
        SigningKey(secret)
    }

    /// True when `header` is `sha256=<hex>` and the hex is the HMAC-SHA256 of `body` under this
    /// key, compared in constant time.
    pub fn verify(&self, header: &str, body: &[u8]) -> bool {
        let Some((scheme, hex_sig)) = header.trim().split_once('=') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("sha256") {
            return false;
        }
        let Ok(signature) = hex::decode(hex_sig.trim()) else {
            return false;
        };
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes()) else {
            return false;
        };
        mac.update(body);
        mac.verify_slice(&signature).is_ok()
    }

    /// The `X-Hub-Signature` value Jira would send with `body` (`sha256=<hex>`): how `preflight`
    /// signs its test event.
    pub fn sign(&self, body: &[u8]) -> String {
        // HMAC takes a key of any length; this cannot fail.
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes())
            .unwrap_or_else(|_| unreachable!("HMAC-SHA256 accepts keys of any length"));
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(body);
        format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn jira_signatures_must_cover_the_exact_body_with_the_secret() {
        let key = SigningKey::new(SecretString::from("s3cret"));
        let body = br#"{"webhookEvent":"jira:issue_updated"}"#;
        let good = sign("s3cret", body);
        assert!(key.verify(&good, body));
        assert!(key.verify(&good.replacen("sha256", "SHA256", 1), body));
        assert!(!key.verify(&sign("other", body), body));
        assert!(!key.verify(&good, b"{}"));
        assert!(!key.verify(&good.replacen("sha256", "sha1", 1), body));
        assert!(!key.verify("sha256=zz", body));
        assert!(!key.verify("sha256=", body));
        assert!(!key.verify("", body));
        // A truncated signature is not a prefix match.
        assert!(!key.verify(&good[..good.len() - 2], body));
    }

    #[test]
    fn a_signature_of_our_own_is_what_jira_sends() {
        let key = SigningKey::new(SecretString::from("s3cret"));
        let body = br#"{"webhookEvent":"findings-bridge:preflight"}"#;
        assert_eq!(key.sign(body), sign("s3cret", body));
        assert!(key.verify(&key.sign(body), body));
    }
}
