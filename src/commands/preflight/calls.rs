//! What a failed call to a ticket system means for a check: what was seen (the cause, never a
//! secret: errors carry no headers and scrub credentials) and the one line that gets past it.

use crate::ticket::{Blame, TicketError};

/// A connection's settings, named the way the operator sets them.
pub struct Settings {
    /// `Jira`, `ServiceNow`: how the system is named in messages.
    pub system: &'static str,
    pub url: &'static str,
    pub credentials: &'static str,
}

pub const JIRA: Settings = Settings {
    system: "Jira",
    url: "JIRA_URL",
    credentials: "JIRA_EMAIL + JIRA_API_TOKEN (Cloud) or JIRA_PAT (Data Center)",
};

pub const SERVICENOW: Settings = Settings {
    system: "ServiceNow",
    url: "SERVICENOW_URL",
    credentials: "SERVICENOW_USERNAME + SERVICENOW_PASSWORD or SERVICENOW_CLIENT_ID + SERVICENOW_CLIENT_SECRET",
};

/// The detail and fix of a check whose call failed. `forbidden` is the fix when the account is
/// refused this one thing (403) while its credentials are good.
pub fn failed(settings: &Settings, error: &TicketError, forbidden: &str) -> (String, String) {
    let detail = error.to_string();
    let fix = match error {
        TicketError::Unusable {
            blame: Blame::Connection,
            status: Some(401),
            ..
        } => format!(
            "{} refused the credentials: check {}",
            settings.system, settings.credentials
        ),
        TicketError::Unusable {
            blame: Blame::Connection,
            status: Some(403),
            ..
        } => forbidden.to_owned(),
        TicketError::Unusable {
            blame: Blame::Connection,
            ..
        } => format!("check {} (host name, TLS)", settings.url),
        TicketError::Transient { .. } | TicketError::OutcomeUnknown { .. } => format!(
            "{} did not answer in time (outcome unknown): run preflight again once it does",
            settings.system
        ),
        TicketError::Unusable { .. } | TicketError::Permanent { .. } => format!(
            "{} refused the request: check {} points at the right instance",
            settings.system, settings.url
        ),
    };
    (detail, fix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(status: Option<u16>, blame: Option<Blame>) -> TicketError {
        let message = "x".to_owned();
        match (status, blame) {
            (status, Some(blame)) => TicketError::Unusable {
                system: "jira",
                operation: "project",
                status,
                blame,
                message,
            },
            (Some(503), None) => TicketError::Transient {
                system: "jira",
                operation: "project",
                status,
                message,
            },
            (status, None) => TicketError::Permanent {
                system: "jira",
                operation: "project",
                status,
                message,
            },
        }
    }

    #[test]
    fn each_kind_of_failure_gets_its_own_fix() {
        let fix = |e| failed(&JIRA, &e, "grant BROWSE_PROJECTS").1;
        assert!(fix(error(Some(401), Some(Blame::Connection))).contains("JIRA_PAT"));
        assert_eq!(
            fix(error(Some(403), Some(Blame::Connection))),
            "grant BROWSE_PROJECTS"
        );
        assert!(fix(error(None, Some(Blame::Connection))).contains("JIRA_URL"));
        assert!(fix(error(Some(503), None)).contains("outcome unknown"));
        assert!(fix(error(Some(400), None)).contains("refused the request"));
    }
}
