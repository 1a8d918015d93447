//! Failures that are not the finding's fault (a refused credential, a project that is gone, an
//! unusable store) pause their connection or rule instead of dead-lettering the finding.

use super::*;

impl Lifecycle {
    /// Turns a failure that is not the finding's fault into a pause of its connection or rule
    /// (and records the pause); other failures pass through.
    pub(super) fn blame(
        &self,
        error: LifecycleError,
        planned: Option<&PlannedTicket>,
    ) -> LifecycleError {
        let (team, subject, probe, reason) = match &error {
            LifecycleError::Store {
                source: StoreError::Refused(reason),
                ..
            }
            | LifecycleError::Index(StoreError::Refused(reason)) => {
                let team = team_of(&error).unwrap_or_else(|| Arc::from("*"));
                (
                    team,
                    Subject::Connection(STORE_CONNECTION.to_owned()),
                    Probe::Connection(STORE_CONNECTION.to_owned()),
                    reason.clone(),
                )
            }
            LifecycleError::Ticket { team, source } => match source.blame() {
                Some(crate::ticket::Blame::Connection) => (
                    team.clone(),
                    Subject::Connection(source.system().to_owned()),
                    Probe::Connection(source.system().to_owned()),
                    source.to_string(),
                ),
                Some(crate::ticket::Blame::Target) => {
                    let Some(planned) = planned else {
                        return error;
                    };
                    let probe = self
                        .tickets
                        .get(&planned.target)
                        .and_then(|system| {
                            system.target_of(&planned.payload, planned.table.as_deref())
                        })
                        .map_or(Probe::Connection(planned.target.clone()), |target| {
                            Probe::Target {
                                connection: planned.target.clone(),
                                target,
                            }
                        });
                    (
                        team.clone(),
                        Subject::Rule {
                            team: team.to_string(),
                            rule: planned.rule.to_string(),
                        },
                        probe,
                        source.to_string(),
                    )
                }
                None => return error,
            },
            _ => return error,
        };
        self.health.pause(subject.clone(), &reason, probe);
        LifecycleError::Paused {
            team,
            subject,
            reason,
        }
    }

    /// [`LifecycleError::Paused`] when the route's connection, rule or the store is paused.
    pub(super) fn check_paused(
        &self,
        team: &Arc<str>,
        connection: &str,
        rule: &str,
    ) -> Result<(), LifecycleError> {
        let store = Subject::Connection(STORE_CONNECTION.to_owned());
        let subject = match self.health.paused(&store) {
            Some(_) => Some(store),
            None => self.health.route_paused(connection, team, rule),
        };
        match subject {
            Some(subject) => Err(LifecycleError::Paused {
                team: team.clone(),
                reason: self.health.paused(&subject).unwrap_or_default(),
                subject,
            }),
            None => Ok(()),
        }
    }
}
