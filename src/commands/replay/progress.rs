//! What a running replay shows: a progress bar on a terminal, periodic log lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use tokio::time::Instant;

use super::summary::ReplaySummary;

/// A progress bar on a terminal; otherwise a log line every [`LOG_EVERY`] messages or
/// [`LOG_INTERVAL`], so a replay run from a job still shows it is alive.
pub(super) enum Progress {
    Bar(indicatif::ProgressBar),
    Log { last: Instant, last_seen: u64 },
}

const LOG_EVERY: u64 = 100;
const LOG_INTERVAL: Duration = Duration::from_secs(5);

impl Progress {
    pub(super) fn new(max: Option<usize>) -> Progress {
        if !std::io::stderr().is_terminal() {
            return Progress::Log {
                last: Instant::now(),
                last_seen: 0,
            };
        }
        let bar = match max {
            Some(n) => indicatif::ProgressBar::new(n as u64),
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
        Progress::Bar(bar)
    }

    pub(super) fn update(&mut self, summary: &ReplaySummary) {
        let acted = summary.replayed + summary.failed.len() as u64;
        let seen = acted + summary.skipped;
        match self {
            Progress::Bar(bar) => {
                bar.set_position(acted);
                bar.set_message(counts(summary));
            }
            Progress::Log { last, last_seen } => {
                if seen >= *last_seen + LOG_EVERY
                    || (seen > *last_seen && last.elapsed() >= LOG_INTERVAL)
                {
                    tracing::info!(
                        replayed = summary.replayed,
                        skipped = summary.skipped,
                        failed = summary.failed.len(),
                        dry_run = summary.dry_run,
                        "replay progress"
                    );
                    *last = Instant::now();
                    *last_seen = seen;
                }
            }
        }
    }

    pub(super) fn finish(&self, summary: &ReplaySummary) {
        if let Progress::Bar(bar) = self {
            bar.finish_with_message(counts(summary));
        }
    }
}

fn counts(summary: &ReplaySummary) -> String {
    format!(
        "{} {} · skipped {} · failed {}",
        if summary.dry_run {
            "would replay"
        } else {
            "replayed"
        },
        summary.replayed,
        summary.skipped,
        summary.failed.len()
    )
}
