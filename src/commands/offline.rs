//! The offline commands: `check` (validate mapping files) and `render` (decode, route and render a
//! file of findings without talking to anything). Both are pure functions of their inputs so they
//! are tested directly, not through a process.

use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;

use crate::config::Config;
use crate::finding::Finding;
use crate::finding::stream::{Chunk, Splitter};
use crate::mapping::spec::Rule;
use crate::mapping::{self, Mappings};
use crate::marker::Marker;
use crate::render::{GroupRoute, RenderError, RenderOptions, RenderedTicket, render_route_shared};
use chrono::{DateTime, Utc};

/// What `check` found: `Ok` with a one-line summary, or every problem as `file:line: message`.
pub fn check(dir: &Path) -> Result<String, String> {
    match mapping::load(dir) {
        Ok(m) => Ok(check_summary(dir, &m)),
        Err(errors) => Err(errors.to_string()),
    }
}

/// The line `check` prints for a valid set: teams, rules and the application inventory.
pub fn check_summary(dir: &Path, m: &Mappings) -> String {
    let inventory = match &m.inventory.file {
        Some(file) => format!(
            ", {} application(s) in {}",
            m.inventory.len(),
            file.file_name().map_or_else(
                || file.display().to_string(),
                |n| n.to_string_lossy().into()
            )
        ),
        None => String::new(),
    };
    format!(
        "{}: {} team file(s), {} rule(s){inventory}, all valid",
        dir.display(),
        m.teams.len(),
        m.rules.len()
    )
}

/// Loads mappings with an optional fixed clock (`--now`), so `render` output can be reproduced.
pub fn load_mappings(dir: &Path, now: Option<DateTime<Utc>>) -> Result<Mappings, String> {
    let loaded = match now {
        Some(t) => mapping::load_with_clock(dir, Arc::new(move || t)),
        None => mapping::load(dir),
    };
    loaded.map_err(|e| e.to_string())
}

/// Decodes `input`, routes every finding and writes one JSON object per finding to `out`:
/// `{"finding_id", "schema", "routes": [{"team", "rule", "target", "marker", "payload"}]}`, a
/// route of a grouped rule also `"group": {"key", "marker"}`.
/// [`render_stream`] over a byte slice, on this thread.
pub fn render(
    mappings: &Mappings,
    input: &[u8],
    opts: &RenderOptions,
    out: &mut dyn Write,
) -> Result<usize, String> {
    render_stream(mappings, input, opts, 1, out)
}

/// At most this many problems are kept for the final report; the rest are counted.
const MAX_REPORTED: usize = 100;

/// Elements handed to a worker at once, and the bytes that close a batch early.
const BATCH_ITEMS: usize = 64;
const BATCH_BYTES: usize = 1 << 20;

/// Reads `input` incrementally (a JSON array element by element; one message, NDJSON or
/// concatenated events value by value), decodes, routes and renders each finding, and writes its
/// line to `out` as soon as it and every finding before it are done, so memory stays flat however
/// long the input is. With `jobs` > 1 that many threads decode and render while the output stays
/// in input order.
///
/// A finding that does not decode is reported (with its array index or JSON path) and skipped; the
/// others are still written. A template that fails to render, or input whose structure is broken
/// (elements can no longer be told apart), stops at that point, findings before it written. Any
/// problem makes the result an `Err` listing them, one per line (the CLI prints them and exits 1);
/// `Ok` holds the number of findings written.
pub fn render_stream<R: BufRead + Send>(
    mappings: &Mappings,
    input: R,
    opts: &RenderOptions,
    jobs: usize,
    out: &mut dyn Write,
) -> Result<usize, String> {
    let mut report = Report::default();
    let splitter = Splitter::new(input);
    let written = if jobs <= 1 {
        let mut written = 0;
        let mut buf = Vec::with_capacity(16 * 1024);
        for item in splitter {
            let chunk = match item {
                Ok(chunk) => chunk,
                Err(e) => {
                    report.push(format!("decode: {e}"));
                    break;
                }
            };
            let done = process(mappings, opts, &chunk, &mut buf);
            out.write_all(&buf)
                .map_err(|e| format!("writing output: {e}"))?;
            buf.clear();
            written += done.findings;
            if report.absorb(done) {
                break;
            }
        }
        written
    } else {
        parallel(mappings, opts, splitter, jobs, out, &mut report)?
    };
    report.into_result(written)
}

/// The problems of one run: the first [`MAX_REPORTED`] in input order, and how many there were.
#[derive(Default)]
struct Report {
    problems: Vec<String>,
    total: usize,
}

impl Report {
    fn push(&mut self, problem: String) {
        if self.problems.len() < MAX_REPORTED {
            self.problems.push(problem);
        }
        self.total += 1;
    }

    /// Takes one chunk's problems; true when processing must stop.
    fn absorb(&mut self, done: Processed) -> bool {
        for problem in done.problems {
            self.push(problem);
        }
        done.fatal
    }

    fn into_result(mut self, written: usize) -> Result<usize, String> {
        if self.total == 0 {
            return Ok(written);
        }
        if self.total > self.problems.len() {
            let more = self.total - self.problems.len();
            self.problems.push(format!("… and {more} more problem(s)"));
        }
        Err(self.problems.join("\n"))
    }
}

/// What one chunk produced besides its output lines.
struct Processed {
    findings: usize,
    problems: Vec<String>,
    /// A render error (or a chunk that ends a cut-off input): nothing after it is processed.
    fatal: bool,
}

/// One output line; fields in the order of the JSON object `render` has always printed (sorted,
/// as `serde_json::Map` sorts them), so the bytes are the same.
#[derive(serde::Serialize)]
struct Line<'a> {
    finding_id: &'a str,
    routes: Vec<RouteLine<'a>>,
    schema: &'static str,
}

#[derive(serde::Serialize)]
struct RouteLine<'a> {
    /// Only for a rule with `group_by`: the group's key and marker (`payload` is its ticket).
    #[serde(skip_serializing_if = "Option::is_none")]
    group: Option<GroupRoute>,
    marker: Marker,
    payload: serde_json::Value,
    rule: &'a str,
    /// Only for a route with a due date, so the lines of every other route keep their bytes.
    #[serde(skip_serializing_if = "Option::is_none")]
    sla: Option<SlaLine>,
    target: &'a str,
    team: &'a str,
}

/// A route's SLA in `render` output: the due date (RFC 3339, UTC) and what a breach would do.
#[derive(serde::Serialize)]
struct SlaLine {
    due_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    escalation: Option<crate::mapping::sla::RenderedEscalation>,
}

impl SlaLine {
    fn of(sla: Option<crate::mapping::sla::SlaState>) -> Option<SlaLine> {
        let sla = sla?;
        Some(SlaLine {
            due_at: chrono::DateTime::from_timestamp(sla.due_at, 0)?
                .to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            escalation: sla.escalation,
        })
    }
}

/// Decodes one chunk, and routes and renders each of its findings into `out` (NDJSON lines).
fn process(
    mappings: &Mappings,
    opts: &RenderOptions,
    chunk: &Chunk,
    out: &mut Vec<u8>,
) -> Processed {
    let mut done = Processed {
        findings: 0,
        problems: Vec::new(),
        fatal: false,
    };
    for decoded in chunk.findings() {
        let f = match decoded {
            Ok(f) => Arc::new(f),
            Err(problem) => {
                done.problems.push(format!("decode: {problem}"));
                continue;
            }
        };
        let mut routes = Vec::new();
        for (rule, rendered) in rendered_routes(mappings, &f, opts) {
            match rendered {
                Ok(rendered) => routes.push(RouteLine {
                    group: rendered.group,
                    marker: rendered.marker,
                    payload: rendered.payload,
                    rule: &rule.name,
                    sla: SlaLine::of(rendered.sla),
                    target: &rule.target,
                    team: &rule.team,
                }),
                Err(e) => {
                    done.problems.push(format!("finding {}: {e}", f.id));
                    done.fatal = true;
                    return done;
                }
            }
        }
        let line = Line {
            finding_id: &f.id,
            routes,
            schema: f.schema.as_str(),
        };
        // Writing JSON into a Vec cannot fail: every key is a string.
        if let Err(e) = serde_json::to_writer(&mut *out, &line) {
            done.problems.push(format!("finding {}: {e}", f.id));
            done.fatal = true;
            return done;
        }
        out.push(b'\n');
        done.findings += 1;
    }
    done
}

/// The routes `mappings` gives `finding`, each with the ticket it renders to (or why it does
/// not): what `render` prints and what `plan` compares, from one path.
pub(crate) fn rendered_routes<'m>(
    mappings: &'m Mappings,
    finding: &Arc<Finding>,
    opts: &RenderOptions,
) -> impl Iterator<Item = (&'m Rule, Result<RenderedTicket, RenderError>)> {
    let application = mappings.application_for(finding);
    mappings.route(finding).into_iter().map(move |rule| {
        let rendered = render_route_shared(&mappings.engine, rule, finding, application, opts);
        (rule, rendered)
    })
}

/// A batch of chunks, or the splitter's fatal error, numbered in input order.
enum Work {
    Chunks(Vec<Chunk>),
    Broken(String),
}

/// `jobs` worker threads over a bounded pipeline: this thread reads and splits, workers decode
/// and render whole batches, and the writer puts batches back in input order. At most
/// `4 × jobs` batches are in flight (read but not yet written), which bounds memory whatever the
/// input size or the speed of one worker.
fn parallel<R: BufRead + Send>(
    mappings: &Mappings,
    opts: &RenderOptions,
    splitter: Splitter<R>,
    jobs: usize,
    out: &mut dyn Write,
    report: &mut Report,
) -> Result<usize, String> {
    use std::collections::BTreeMap;
    use std::sync::mpsc::{channel, sync_channel};
    use std::sync::{Mutex, PoisonError};

    let in_flight = 4 * jobs;
    let (tokens_tx, tokens_rx) = sync_channel::<()>(in_flight);
    for _ in 0..in_flight {
        let _ = tokens_tx.send(());
    }
    let (work_tx, work_rx) = sync_channel::<(usize, Work)>(jobs);
    let work_rx = Mutex::new(work_rx);
    let (done_tx, done_rx) = channel::<(usize, Vec<u8>, Processed)>();
    // Buffers go back to the thread that allocated them (chunks to the reader, output to the
    // workers): with a thread-caching allocator, memory freed by another thread is reused late,
    // and peak RSS grew with the run (51 MiB for 20,000 findings at --jobs 2 with mimalloc
    // instead of 14 MiB).
    let (spent_chunks_tx, spent_chunks_rx) = channel::<Vec<Vec<u8>>>();
    let spare_output: Mutex<Vec<Vec<u8>>> = Mutex::new(Vec::new());

    std::thread::scope(|scope| {
        // Reader: splits the input into numbered batches, each taking a token first.
        scope.spawn(move || {
            let mut splitter = splitter;
            let mut seq = 0;
            let mut batch = Vec::new();
            let mut bytes = 0;
            let send = |seq: &mut usize, work: Work| -> bool {
                if tokens_rx.recv().is_err() {
                    return false;
                }
                let ok = work_tx.send((*seq, work)).is_ok();
                *seq += 1;
                ok
            };
            while let Some(item) = splitter.next() {
                while let Ok(spent) = spent_chunks_rx.try_recv() {
                    for buf in spent {
                        splitter.recycle(buf);
                    }
                }
                match item {
                    Ok(chunk) => {
                        bytes += chunk.bytes.len();
                        batch.push(chunk);
                        if batch.len() >= BATCH_ITEMS || bytes >= BATCH_BYTES {
                            bytes = 0;
                            if !send(&mut seq, Work::Chunks(std::mem::take(&mut batch))) {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        if !batch.is_empty()
                            && !send(&mut seq, Work::Chunks(std::mem::take(&mut batch)))
                        {
                            return;
                        }
                        send(&mut seq, Work::Broken(format!("decode: {e}")));
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                send(&mut seq, Work::Chunks(batch));
            }
        });
        for _ in 0..jobs {
            let work_rx = &work_rx;
            let spare_output = &spare_output;
            let done_tx = done_tx.clone();
            let spent_chunks_tx = spent_chunks_tx.clone();
            scope.spawn(move || {
                loop {
                    let next = work_rx
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .recv();
                    let Ok((seq, work)) = next else { return };
                    let mut buf = spare_output
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .pop()
                        .unwrap_or_default();
                    let done = match work {
                        Work::Broken(problem) => Processed {
                            findings: 0,
                            problems: vec![problem],
                            fatal: true,
                        },
                        Work::Chunks(chunks) => {
                            let mut total = Processed {
                                findings: 0,
                                problems: Vec::new(),
                                fatal: false,
                            };
                            for chunk in &chunks {
                                let done = process(mappings, opts, chunk, &mut buf);
                                total.findings += done.findings;
                                total.problems.extend(done.problems);
                                if done.fatal {
                                    total.fatal = true;
                                    break;
                                }
                            }
                            let _ =
                                spent_chunks_tx.send(chunks.into_iter().map(|c| c.bytes).collect());
                            total
                        }
                    };
                    if done_tx.send((seq, buf, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(done_tx);
        drop(spent_chunks_tx);

        // Writer (this thread: `out` stays here): batches in input order.
        let mut pending: BTreeMap<usize, (Vec<u8>, Processed)> = BTreeMap::new();
        let mut next = 0;
        let mut written = 0;
        let mut result = Ok(());
        'receive: for (seq, buf, done) in done_rx.iter() {
            pending.insert(seq, (buf, done));
            while let Some((buf, done)) = pending.remove(&next) {
                next += 1;
                if let Err(e) = out.write_all(&buf) {
                    result = Err(format!("writing output: {e}"));
                    break 'receive;
                }
                let mut buf = buf;
                buf.clear();
                spare_output
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(buf);
                written += done.findings;
                if report.absorb(done) {
                    break 'receive;
                }
                let _ = tokens_tx.send(());
            }
        }
        // Leaving drops the token sender and the result receiver: the reader and the workers stop
        // at their next hand-over.
        drop(tokens_tx);
        drop(done_rx);
        result.map(|()| written)
    })
}
/// Read buffer of `render`: large enough that reads are few, small enough not to matter.
const INPUT_BUFFER: usize = 256 * 1024;

/// A buffered reader of the file at `path`, or of standard input for `None`: the input of
/// `render` and of `plan`.
pub(crate) fn input_reader(path: Option<&Path>) -> anyhow::Result<Box<dyn BufRead + Send>> {
    Ok(match path {
        None => Box::new(std::io::BufReader::with_capacity(
            INPUT_BUFFER,
            std::io::stdin(),
        )),
        Some(path) => {
            let file =
                std::fs::File::open(path).with_context(|| format!("reading {}", path.display()))?;
            Box::new(std::io::BufReader::with_capacity(INPUT_BUFFER, file))
        }
    })
}

/// `findings-bridge check`: prints the summary, or every `file:line: problem`, and exits 1 on
/// any.
pub fn check_command(dir: &Path) -> ExitCode {
    match check(dir) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            ExitCode::FAILURE
        }
    }
}

/// `findings-bridge render`: `input` (a file or `-`) streamed through decode → route → render
/// on `jobs` threads; the output is in input order. Exits 1 when a mapping file or a finding
/// does not work, after printing everything that did.
pub fn render_command(
    config: &Config,
    mappings: &Path,
    jira_api_version: Option<&str>,
    now: Option<&str>,
    jobs: usize,
    input: &str,
) -> anyhow::Result<ExitCode> {
    let now = now
        .map(|s| {
            crate::time::parse_time(s)
                .with_context(|| format!("--now {s:?} is not an RFC 3339 timestamp"))
        })
        .transpose()?;
    let opts = config.render(jira_api_version)?;
    let mappings = match load_mappings(mappings, now) {
        Ok(m) => m,
        Err(errors) => {
            eprintln!("{errors}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let reader = input_reader((input != "-").then(|| Path::new(input)))?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(INPUT_BUFFER, stdout.lock());
    let result = render_stream(&mappings, reader, &opts, jobs, &mut out);
    std::io::Write::flush(&mut out).context("writing output")?;
    Ok(match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(problems) => {
            for problem in problems.lines() {
                eprintln!("findings-bridge: {problem}");
            }
            ExitCode::FAILURE
        }
    })
}
