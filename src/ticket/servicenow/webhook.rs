//! ServiceNow webhook verification. ServiceNow has no signed outbound webhooks, so the business
//! rule that calls the bridge sends the shared secret (`SERVICENOW_WEBHOOK_SECRET`) in the
//! `X-Bridge-Secret` header, over HTTPS. The route that receives it is [`crate::sync::webhooks`].

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

/// Header carrying the ServiceNow shared secret.
pub const SECRET_HEADER: &str = "x-bridge-secret";

/// Label the secret is digested under before comparison.
const SECRET_DIGEST_LABEL: &[u8] = b"findings-bridge servicenow webhook secret";

/// The expected secret, kept as its HMAC under a fixed label: comparing digests of equal length
/// in constant time reveals neither the secret's bytes nor its length.
#[derive(Clone)]
pub struct SharedSecret {
    digest: Vec<u8>,
}

impl SharedSecret {
    pub fn new(secret: &SecretString) -> Option<SharedSecret> {
        secret_digest(secret.expose_secret().as_bytes()).map(|digest| SharedSecret { digest })
    }

    /// True when `provided` is the whole secret.
    pub fn matches(&self, provided: &str) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(provided.as_bytes()) else {
            return false;
        };
        mac.update(SECRET_DIGEST_LABEL);
        mac.verify_slice(&self.digest).is_ok()
    }
}

fn secret_digest(secret: &[u8]) -> Option<Vec<u8>> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).ok()?;
    mac.update(SECRET_DIGEST_LABEL);
    Some(mac.finalize().into_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn servicenow_secret_is_compared_whole() {
        let expected = SharedSecret::new(&SecretString::from("shared-secret")).unwrap();
        assert!(expected.matches("shared-secret"));
        assert!(!expected.matches("shared-secre"));
        assert!(!expected.matches("shared-secret "));
        assert!(!expected.matches(""));
    }
}
