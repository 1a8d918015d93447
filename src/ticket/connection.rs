//! What every ticket client holds and does the same way: its name, its base URL and the URLs
//! under it, how it signs requests (swapped whole when the credentials rotate), its HTTP layer,
//! and its settle time.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use secrecy::SecretString;
use url::Url;

use crate::ticket::auth::Rotating;
use crate::ticket::http::{ClientConfigError, Clock, HttpClient, HttpSettings};

/// One connection to a ticket system. `S` is how its requests are signed (a header, or what a
/// token is fetched with).
pub struct Connection<S> {
    /// Connection name, used as `TicketRef::system`.
    pub name: String,
    pub base_url: Url,
    /// Swapped when the credentials rotate ([`Connection::replace_signing`]).
    signing: Rotating<S>,
    pub http: HttpClient,
    /// Send window + request timeout + search lag: see
    /// [`TicketSystem::settle_time`](crate::ticket::TicketSystem::settle_time).
    pub settle_time: Duration,
}

/// How requests are signed, and the secret values errors must never show alongside.
pub type SignedWith<S> = (S, Vec<SecretString>);

impl<S: Clone> Connection<S> {
    /// Connection `name` to system `system` at `base_url`, which must be able to have paths
    /// appended (see [`require_base`], checked before the credentials are).
    pub fn open(
        system: &'static str,
        name: String,
        base_url: Url,
        http: &HttpSettings,
        search_consistency: Duration,
        clock: Arc<dyn Clock>,
        (signing, scrub): SignedWith<S>,
    ) -> Result<Connection<S>, ClientConfigError> {
        Ok(Connection {
            name,
            base_url,
            signing: Rotating::new(signing),
            http: HttpClient::new(system, http, clock, scrub)?,
            settle_time: http.at_most_once_span() + search_consistency,
        })
    }

    /// How requests are signed now.
    pub fn signing(&self) -> S {
        self.signing.current()
    }

    /// Signs every request from now on as `signing` says; the old secrets are no longer scrubbed
    /// from errors, the new ones are.
    pub fn replace_signing(&self, (signing, scrub): SignedWith<S>) {
        self.signing.replace(signing);
        self.http.replace_scrub(scrub);
    }

    /// The base URL with `segments` appended to its path.
    pub fn url<'s>(&self, segments: impl IntoIterator<Item = &'s str>) -> Url {
        url_with_path(&self.base_url, segments)
    }

    /// `client { name: …, base_url: …, field: … }` and whatever else the client adds: the
    /// `Debug` of a client, which never shows its credentials.
    pub fn debug<'f, 'b>(
        &self,
        f: &'f mut fmt::Formatter<'b>,
        client: &str,
        field: (&str, &dyn fmt::Debug),
    ) -> fmt::Result {
        f.debug_struct(client)
            .field("name", &self.name)
            .field("base_url", &self.base_url.as_str())
            .field(field.0, field.1)
            .finish_non_exhaustive()
    }
}

/// Refuses a base URL that paths cannot be appended to (`mailto:…`), naming setting `name`.
pub fn require_base(name: &'static str, base_url: &Url) -> Result<(), ClientConfigError> {
    if base_url.cannot_be_a_base() {
        return Err(ClientConfigError::Invalid {
            name,
            message: "not a base URL".to_owned(),
        });
    }
    Ok(())
}

/// `base` with `segments` appended to its path (a trailing `/` of the base is not doubled).
pub fn url_with_path<'s>(base: &Url, segments: impl IntoIterator<Item = &'s str>) -> Url {
    let mut url = base.clone();
    if let Ok(mut path) = url.path_segments_mut() {
        path.pop_if_empty().extend(segments);
    }
    url
}
