//! What a long-running command (replay, plan, reconcile) shows while it works: a progress bar on
//! a terminal, periodic log lines otherwise, so a run from an ECS task or a CI job still shows it
//! is alive.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

/// A progress bar on a terminal (stderr); otherwise a log line every [`LOG_EVERY`] items or
/// [`LOG_INTERVAL`], whichever comes first.
pub(crate) struct Progress {
    /// What the command is doing, for the log line ("replay", "plan", …).
    what: &'static str,
    kind: Kind,
    /// Items between two log lines ([`LOG_EVERY`] unless [`Progress::log_every`] says).
    log_every: u64,
}

enum Kind {
    Bar(indicatif::ProgressBar),
    Log { last: Instant, last_seen: u64 },
}

const LOG_EVERY: u64 = 100;
const LOG_INTERVAL: Duration = Duration::from_secs(5);

impl Progress {
    /// `max` is the number of items when it is known in advance (a bar), `None` for a spinner.
    pub(crate) fn new(what: &'static str, max: Option<u64>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress {
                what,
                kind: Kind::Log {
                    last: Instant::now(),
                    last_seen: 0,
                },
                log_every: LOG_EVERY,
            };
        }
        let bar = match max {
            Some(n) => indicatif::ProgressBar::new(n),
            None => indicatif::ProgressBar::new_spinner(),
        };
        let template = if max.is_some() {
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}"
        } else {
            "{spinner} [{elapsed_precise}] {msg}"
        };
        if let Ok(style) = indicatif::ProgressStyle::with_template(template) {
            bar.set_style(style);
        }
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            what,
            kind: Kind::Bar(bar),
            log_every: LOG_EVERY,
        }
    }

    /// `position` is what the bar shows against `max`; `seen` counts every item looked at (the
    /// log cadence); `message` says the counts so far and is only built when it is shown.
    pub(crate) fn update(&mut self, position: u64, seen: u64, message: impl FnOnce() -> String) {
        match &mut self.kind {
            Kind::Bar(bar) => {
                bar.set_position(position);
                bar.set_message(message());
            }
            Kind::Log { last, last_seen } => {
                if seen >= *last_seen + self.log_every
                    || (seen > *last_seen && last.elapsed() >= LOG_INTERVAL)
                {
                    tracing::info!(progress = %message(), "{} progress", self.what);
                    *last = Instant::now();
                    *last_seen = seen;
                }
            }
        }
    }

    /// Leaves the bar on the terminal with the final counts (the log form has its own summary).
    pub(crate) fn finish(&self, message: String) {
        if let Kind::Bar(bar) = &self.kind {
            bar.finish_with_message(message);
        }
    }

    /// A log line every `items` items (or [`LOG_INTERVAL`]) instead of every [`LOG_EVERY`]: for
    /// commands whose items take microseconds (`plan` reads tens of thousands of findings a
    /// second), where one line per hundred would flood the log.
    pub(crate) fn log_every(mut self, items: u64) -> Progress {
        self.log_every = items.max(1);
        self
    }
}
