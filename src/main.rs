//! `findings-bridge` command line. Only argument parsing and wiring live here; every command's
//! logic is in the library so it is tested without spawning processes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};

use findings_bridge::commands::offline;
use findings_bridge::commands::run::{self, RunSettings, StoreSpec};
use findings_bridge::config::Config;
use findings_bridge::runtime::shutdown::Shutdown;
use findings_bridge::runtime::telemetry::{self, LogFormat};

/// mimalloc instead of glibc's malloc: decode → route → render builds and drops many small
/// values (the finding's JSON tree, template values, payloads), and glibc's allocator was the
/// largest item of its profile (BENCHMARKS.md §1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Parser)]
#[command(
    name = "findings-bridge",
    version,
    about = "Security Hub findings to Jira / ServiceNow tickets and back, one ticket per finding and team"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The worker: consume the queue, keep tickets in step with findings, serve /healthz,
    /// /readyz and /metrics. Secrets come from the environment only (see the README).
    Run(RunArgs),
    /// Write ticket status back to Security Hub once (cron-style); `run` also does this every
    /// BRIDGE_SYNC_INTERVAL seconds. Prints the report as JSON; exits 1 if anything failed.
    Sync {
        /// Poll once and exit (the only mode; the poller inside `run` is the long-running one).
        #[arg(long, required = true)]
        once: bool,
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
        #[arg(
            long,
            env = "BRIDGE_STORE",
            default_value = "sqlite:findings-bridge.db"
        )]
        store: StoreSpec,
    },
    /// Move dead-lettered messages back to a queue, or through the pipeline directly.
    Replay(ReplayArgs),
    /// Exit 0 when the worker's /healthz answers (the ECS container health check).
    Healthcheck {
        #[arg(long, env = "BRIDGE_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
        http_addr: String,
        /// Seconds to wait for the answer.
        #[arg(long, default_value_t = 3)]
        timeout: u64,
    },
    /// Validate the mapping files; prints `file:line: problem` for each error and exits 1.
    Check {
        /// Directory of team mapping files.
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
    },
    /// Decode, route and render findings offline; prints one JSON object per finding with the exact
    /// request body each route would send.
    Render {
        #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
        mappings: PathBuf,
        /// Jira REST API version the payloads are for: 3 (Cloud, ADF) or 2 (Data Center, wiki).
        /// Default: what the configured Jira connection speaks (JIRA_API_VERSION, or 2 for a
        /// JIRA_PAT alone), else 3.
        #[arg(long, value_parser = ["3", "2"])]
        jira_api_version: Option<String>,
        /// Fixed time for `now()` in templates (RFC 3339), for reproducible output.
        #[arg(long)]
        now: Option<String>,
        /// Threads that decode and render; output stays in input order.
        #[arg(long, default_value_t = std::num::NonZeroUsize::MIN)]
        jobs: std::num::NonZeroUsize,
        /// A file of events or findings (one event, NDJSON, concatenated events, or a JSON array
        /// of findings), or `-` for standard input; read incrementally.
        input: String,
    },
}

const DEFAULT_HTTP_ADDR: &str = "127.0.0.1:8080";

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// The SQS queue the findings arrive on.
    #[arg(long, env = "BRIDGE_QUEUE_URL")]
    queue_url: String,
    /// Where messages that can never succeed are moved, with the reason attached.
    #[arg(long, env = "BRIDGE_DLQ_URL")]
    dlq_url: Option<String>,
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    mappings: PathBuf,
    /// `sqlite:PATH` (one replica) or `dynamodb:TABLE` (several replicas).
    #[arg(
        long,
        env = "BRIDGE_STORE",
        default_value = "sqlite:findings-bridge.db"
    )]
    store: StoreSpec,
    /// Messages worked on at once.
    #[arg(long, env = "BRIDGE_CONCURRENCY", default_value_t = 16)]
    concurrency: usize,
    /// Address of the health / readiness / metrics server.
    #[arg(long, env = "BRIDGE_HTTP_ADDR", default_value = DEFAULT_HTTP_ADDR)]
    http_addr: SocketAddr,
    /// Seconds between status polls of the ticket systems.
    #[arg(long, env = "BRIDGE_SYNC_INTERVAL", default_value_t = 60)]
    sync_interval: u64,
    /// Seconds in-flight work may take after SIGTERM (keep it under ECS's stop timeout).
    #[arg(long, env = "BRIDGE_GRACE_PERIOD", default_value_t = 25)]
    grace_period: u64,
    /// Seconds a received message stays hidden; extended while its work runs.
    #[arg(long, env = "BRIDGE_VISIBILITY_TIMEOUT", default_value_t = 60)]
    visibility_timeout: u64,
    /// Seconds a claim on one (finding, team) lasts unless renewed; renewed every third of it
    /// while its work runs. A SIGKILLed worker's findings are taken over this long after.
    #[arg(long, env = "BRIDGE_LEASE", default_value_t = 60)]
    lease: u64,
    /// Stop once the queue is empty (demos, cron-style runs, load tests).
    #[arg(long)]
    drain: bool,
    /// Do not write workflow state back to Security Hub.
    #[arg(long, env = "BRIDGE_NO_WRITEBACK")]
    no_writeback: bool,
    /// Log format: auto (JSON unless stdout is a terminal), json or pretty.
    #[arg(long, env = "BRIDGE_LOG_FORMAT", default_value = "auto")]
    log_format: LogFormat,
}

#[derive(Debug, clap::Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["to", "process", "native"])))]
struct ReplayArgs {
    /// The dead-letter queue to read.
    #[arg(long, env = "BRIDGE_DLQ_URL")]
    from: String,
    /// Send each message back to this queue (usually the source queue).
    #[arg(long)]
    to: Option<String>,
    /// Run each message through the pipeline here and now.
    #[arg(long)]
    process: bool,
    /// Start SQS's own redrive (StartMessageMoveTask) back to each message's source queue; no
    /// filters.
    #[arg(long)]
    native: bool,
    /// Only messages matching FIELD=VALUE (error-kind, finding-id, team, product); repeat to
    /// narrow (different fields) or widen (same field).
    #[arg(long = "match", value_name = "FIELD=VALUE")]
    filters: Vec<findings_bridge::commands::replay::Filter>,
    /// Only messages that first failed at or after T (RFC 3339, a date, or an age like 6h / 7d).
    #[arg(long)]
    since: Option<String>,
    /// Only messages that first failed at or before T.
    #[arg(long)]
    until: Option<String>,
    /// Replay at most N messages.
    #[arg(long)]
    max: Option<usize>,
    /// At most N messages per second.
    #[arg(long)]
    rate: Option<f64>,
    /// Report what would happen; change nothing.
    #[arg(long)]
    dry_run: bool,
    #[arg(long, env = "BRIDGE_MAPPINGS", default_value = "mappings")]
    mappings: PathBuf,
    #[arg(
        long,
        env = "BRIDGE_STORE",
        default_value = "sqlite:findings-bridge.db"
    )]
    store: StoreSpec,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("findings-bridge: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    // The one read of the environment; every command takes its settings from here.
    let config = Config::from_env();
    match cli.command {
        Command::Run(args) => run_worker(&config, args),
        Command::Sync {
            once: _,
            mappings,
            store,
        } => {
            init_report_logging(&config);
            let report = runtime()?.block_on(run::sync_once(&config, &mappings, &store))?;
            println!("{}", serde_json::to_string_pretty(&report)?);
            Ok(if report.is_clean() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Replay(args) => {
            init_report_logging(&config);
            runtime()?.block_on(replay(&config, args))
        }
        Command::Healthcheck { http_addr, timeout } => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("starting the runtime")?;
            Ok(
                match runtime.block_on(findings_bridge::runtime::server::healthcheck(
                    &http_addr,
                    Duration::from_secs(timeout),
                )) {
                    Ok(()) => {
                        // Alive. Say what is paused (it does not make the task unhealthy).
                        if let Ok(lines) =
                            runtime.block_on(findings_bridge::runtime::server::not_ready(
                                &http_addr,
                                Duration::from_secs(timeout),
                            ))
                        {
                            for line in lines {
                                println!("not ready: {line}");
                            }
                        }
                        ExitCode::SUCCESS
                    }
                    Err(e) => {
                        eprintln!("findings-bridge: unhealthy: {e}");
                        ExitCode::FAILURE
                    }
                },
            )
        }
        Command::Check { mappings } => Ok(match offline::check(&mappings) {
            Ok(summary) => {
                println!("{summary}");
                ExitCode::SUCCESS
            }
            Err(errors) => {
                eprintln!("{errors}");
                ExitCode::FAILURE
            }
        }),
        Command::Render {
            mappings,
            jira_api_version,
            now,
            jobs,
            input,
        } => {
            let now = now
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .with_context(|| format!("--now {s:?} is not an RFC 3339 timestamp"))
                })
                .transpose()?;
            let mappings = match offline::load_mappings(&mappings, now) {
                Ok(m) => m,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let reader: Box<dyn std::io::BufRead + Send> = if input == "-" {
                Box::new(std::io::BufReader::with_capacity(
                    INPUT_BUFFER,
                    std::io::stdin(),
                ))
            } else {
                let file =
                    std::fs::File::open(&input).with_context(|| format!("reading {input}"))?;
                Box::new(std::io::BufReader::with_capacity(INPUT_BUFFER, file))
            };
            let opts = config.render(jira_api_version.as_deref())?;
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::with_capacity(INPUT_BUFFER, stdout.lock());
            let result = offline::render_stream(&mappings, reader, &opts, jobs.get(), &mut out);
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
    }
}

/// Logging for the commands whose stdout is a report (`sync --once` prints JSON, `replay` its
/// summary): log lines go to stderr so `findings-bridge sync --once | jq` reads only the report.
fn init_report_logging(config: &Config) {
    let (filter, filter_problem) = telemetry::env_filter();
    let subscriber = telemetry::subscriber(
        config.log_format().unwrap_or_default(),
        filter,
        std::io::stderr,
    );
    if tracing::subscriber::set_global_default(subscriber).is_ok()
        && let Some(problem) = filter_problem
    {
        tracing::warn!("{problem}");
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")
}

async fn replay(config: &Config, args: ReplayArgs) -> anyhow::Result<ExitCode> {
    use findings_bridge::aws::sqs::{Queue, SqsQueue};
    use findings_bridge::commands::replay::{self, ReplayDeps, ReplayOptions, ReplayTarget};
    use std::sync::Arc;

    let now = chrono::Utc::now();
    let target = if let Some(url) = args.to.clone() {
        ReplayTarget::Queue(url)
    } else if args.process {
        ReplayTarget::Process
    } else {
        ReplayTarget::Native {
            destination: None,
            max_per_second: args.rate.map(|r| r.round().max(1.0) as i32),
        }
    };
    let mut opts = ReplayOptions::new(args.from.clone(), target.clone());
    opts.filters = args.filters;
    opts.since = args
        .since
        .as_deref()
        .map(|s| replay::parse_time(s, now))
        .transpose()?;
    opts.until = args
        .until
        .as_deref()
        .map(|s| replay::parse_time(s, now))
        .transpose()?;
    opts.max = args.max;
    opts.rate = args.rate.filter(|_| !args.native);
    opts.dry_run = args.dry_run;

    let sdk = findings_bridge::aws::sdk_config(config.aws()?).await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let mut deps = ReplayDeps::new(Arc::new(
        SqsQueue::new(sqs.clone(), &args.from).reading_all_attributes(),
    ));
    let needs_mappings = matches!(target, ReplayTarget::Process)
        || opts
            .filters
            .iter()
            .any(|f| f.field == replay::FilterField::Team);
    match &target {
        ReplayTarget::Queue(url) => {
            deps.target_queue = Some(Arc::new(SqsQueue::new(sqs.clone(), url)) as Arc<dyn Queue>);
        }
        ReplayTarget::Native { .. } => deps.sqs = Some(sqs.clone()),
        ReplayTarget::Process => {}
    }
    if needs_mappings {
        let pipeline = run::Pipeline::build(config, &args.mappings, &args.store, true).await?;
        deps.teams = Some(replay::teams_from_mappings(pipeline.mappings.current()));
        if matches!(target, ReplayTarget::Process) {
            deps.process = Some(replay::process_with_lifecycle(Arc::new(
                pipeline.lifecycle()?,
            )));
        }
    }
    let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
    let summary = replay::replay(opts, deps, shutdown).await?;
    println!("{summary}");
    Ok(if summary.has_failures() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn run_worker(config: &Config, args: RunArgs) -> anyhow::Result<ExitCode> {
    telemetry::init_logging(args.log_format);
    let settings = RunSettings {
        queue_url: args.queue_url,
        dlq_url: args.dlq_url.filter(|u| !u.is_empty()),
        mappings: args.mappings,
        store: args.store,
        concurrency: args.concurrency,
        http_addr: args.http_addr,
        sync_interval: Duration::from_secs(args.sync_interval.max(1)),
        grace: Duration::from_secs(args.grace_period),
        visibility_timeout: Duration::from_secs(args.visibility_timeout.clamp(1, 43_200)),
        lease: Duration::from_secs(args.lease.clamp(1, 3_600)),
        drain: args.drain,
        write_back: !args.no_writeback,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let shutdown = Shutdown::from_signals().context("installing signal handlers")?;
        let summary = run::run(config, settings, shutdown).await?;
        tracing::info!(?summary, "findings-bridge stopped");
        Ok(ExitCode::SUCCESS)
    })
}

/// Read buffer of `render`: large enough that reads are few, small enough not to matter.
const INPUT_BUFFER: usize = 256 * 1024;
