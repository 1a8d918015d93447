//! The dedup marker: `fb-` + the first 32 hex characters of SHA-256 of `team\nfinding id`.
//! Stored on the ticket (Jira label, ServiceNow `correlation_id`) and in the store, so a ticket
//! created just before a crash can be found again. Part of the public contract: never change it.

use sha2::{Digest, Sha256};

/// Label every bridge ticket carries besides its marker.
pub const BRIDGE_LABEL: &str = "findings-bridge";

#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(transparent)]
pub struct Marker(String);

impl Marker {
    pub fn new(team: &str, finding_id: &str) -> Marker {
        let mut hasher = Sha256::new();
        hasher.update(team.as_bytes());
        hasher.update(b"\n");
        hasher.update(finding_id.as_bytes());
        let digest = hasher.finalize();
        let mut out = String::with_capacity(35);
        out.push_str("fb-");
        out.push_str(&hex::encode(&digest[..16]));
        Marker(out)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Rebuilds a marker read back from a store or ticket, checking its shape.
    pub fn parse(s: &str) -> Option<Marker> {
        let hex = s.strip_prefix("fb-")?;
        (hex.len() == 32 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| Marker(s.to_owned()))
    }
}

impl std::fmt::Display for Marker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_follows_the_documented_formula() {
        // printf 'payments\nabc' | sha256sum → first 32 hex chars
        let m = Marker::new("payments", "abc");
        let expected = {
            let d = Sha256::digest(b"payments\nabc");
            format!("fb-{}", &hex::encode(d)[..32])
        };
        assert_eq!(m.as_str(), expected);
        assert_eq!(m.as_str(), "fb-8cc8887b236f96c3ba990ce5e3737607");
        assert_eq!(m.as_str().len(), 35);
        assert_ne!(
            Marker::new("payments", "abc"),
            Marker::new("platform", "abc")
        );
        assert_eq!(Marker::parse(m.as_str()), Some(m));
        assert_eq!(Marker::parse("fb-XYZ"), None);
    }
}
