//! `findings-bridge` command line. Only argument parsing and wiring live here; every command's
//! logic is in the library so it is tested without spawning processes.

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use findings_bridge::cli;
use findings_bridge::render::{JiraFlavor, RenderOptions};

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
        #[arg(long, env = "JIRA_API_VERSION", default_value = "3", value_parser = ["3", "2"])]
        jira_api_version: String,
        /// Fixed time for `now()` in templates (RFC 3339), for reproducible output.
        #[arg(long)]
        now: Option<String>,
        /// A file of events or findings, or `-` for standard input.
        input: String,
    },
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
    match cli.command {
        Command::Check { mappings } => Ok(match cli::check(&mappings) {
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
            input,
        } => {
            let now = now
                .map(|s| {
                    chrono::DateTime::parse_from_rfc3339(&s)
                        .map(|t| t.with_timezone(&chrono::Utc))
                        .with_context(|| format!("--now {s:?} is not an RFC 3339 timestamp"))
                })
                .transpose()?;
            let mappings = match cli::load_mappings(&mappings, now) {
                Ok(m) => m,
                Err(errors) => {
                    eprintln!("{errors}");
                    return Ok(ExitCode::FAILURE);
                }
            };
            let bytes = read_input(&input)?;
            let opts = RenderOptions {
                jira: if jira_api_version == "2" {
                    JiraFlavor::DataCenter
                } else {
                    JiraFlavor::Cloud
                },
            };
            let stdout = std::io::stdout();
            let mut out = std::io::BufWriter::new(stdout.lock());
            let result = cli::render(&mappings, &bytes, &opts, &mut out);
            std::io::Write::flush(&mut out).context("writing output")?;
            Ok(match result {
                Ok(_) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("findings-bridge: {e}");
                    ExitCode::FAILURE
                }
            })
        }
    }
}

fn read_input(input: &str) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    if input == "-" {
        std::io::stdin()
            .read_to_end(&mut bytes)
            .context("reading standard input")?;
    } else {
        bytes = std::fs::read(input).with_context(|| format!("reading {input}"))?;
    }
    Ok(bytes)
}
