//! OAuth client credentials for ServiceNow: the token is fetched from `/oauth_token.do`, shared
//! by every task of the connection until shortly before it expires, and presented as a bearer
//! header.

use std::time::Duration;

use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::Value;

use super::SYSTEM;
use super::client::ServiceNowClient;
use super::config::Signing;
use crate::ticket::auth;
use crate::ticket::http::CachedToken;
use crate::ticket::{Blame, TicketError};

/// A token's lifetime when the token endpoint does not say (ServiceNow's default).
const DEFAULT_LIFETIME_SECS: u64 = 1800;

impl ServiceNowClient {
    /// The cached OAuth token, fetched with the client credentials when there is none or it is
    /// about to expire.
    pub(super) async fn token(&self) -> Result<CachedToken, TicketError> {
        let Signing::OAuth {
            client_id,
            client_secret,
        } = self.conn.signing()
        else {
            return Err(self.conn.http.permanent(
                "oauth_token",
                None,
                "not an OAuth connection".to_owned(),
            ));
        };
        self.tokens
            .get(
                self.conn.http.clock().as_ref(),
                self.token_refresh_margin,
                || self.fetch_token(&client_id, &client_secret),
            )
            .await
    }

    async fn fetch_token(
        &self,
        client_id: &str,
        client_secret: &SecretString,
    ) -> Result<(SecretString, Duration), TicketError> {
        const OP: &str = "oauth_token";
        let url = self.conn.url(["oauth_token.do"]);
        let form = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret.expose_secret())
            .finish();
        let response = self
            .conn
            .http
            .send(OP, |c| {
                c.post(url.clone())
                    .header(ACCEPT, "application/json")
                    .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
                    .body(form.clone())
            })
            .await
            // The token endpoint refusing the client (a rotated secret, a revoked client) is the
            // connection's fault, whatever status it chose to say so with.
            .map_err(|e| match e {
                TicketError::Permanent { .. } => e.blamed_on(Blame::Connection),
                other => other,
            })?;
        let token: TokenResponse = self.conn.http.json(OP, &response)?;
        let lifetime = match &token.expires_in {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            _ => None,
        }
        .unwrap_or(DEFAULT_LIFETIME_SECS);
        if token.access_token.is_empty() {
            return Err(self.conn.http.permanent(
                OP,
                Some(response.status),
                "empty access_token".to_owned(),
            ));
        }
        Ok((
            SecretString::from(token.access_token),
            Duration::from_secs(lifetime),
        ))
    }
}

/// The `Authorization` header for `token`.
pub(super) fn bearer(
    operation: &'static str,
    token: &CachedToken,
) -> Result<HeaderValue, TicketError> {
    auth::bearer(&token.token).ok_or_else(|| TicketError::Permanent {
        system: SYSTEM,
        operation,
        status: None,
        message: "access_token contains characters not allowed in an HTTP header".to_owned(),
    })
}

#[derive(Debug, Deserialize)]
struct TokenResponse {
    access_token: String,
    #[serde(default)]
    expires_in: Option<Value>,
}
