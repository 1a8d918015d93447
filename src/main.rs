//! `findings-bridge` command line: the flags are in `config::cli`, every command in `commands`.

use std::process::ExitCode;

use clap::Parser;

use findings_bridge::config::cli::Cli;

/// mimalloc instead of glibc's malloc: decode → route → render builds and drops many small
/// values (the finding's JSON tree, template values, payloads), and glibc's allocator was the
/// largest item of its profile (BENCHMARKS.md §1).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    findings_bridge::commands::main(Cli::parse())
}
