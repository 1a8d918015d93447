//! A ready-made error answer that travels through `Result`s cheaply.

use axum::response::{IntoResponse, Response};

/// An error response already shaped like the simulated service's own (Jira, ServiceNow or AWS),
/// boxed because helpers return it through `Result` and a bare `Response` is large.
pub(crate) struct Rejection(Box<Response>);

impl From<Response> for Rejection {
    fn from(r: Response) -> Self {
        Rejection(Box::new(r))
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        *self.0
    }
}
