//! `findings-bridge healthcheck`: the ECS container health check. Exits 0 when the worker's
//! `/healthz` answers, and prints what `/readyz` reports as not ready (a paused connection or
//! rule) without failing: restarting a task does not bring back a refused credential.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use crate::runtime::server;

pub fn command(http_addr: &str, timeout: Duration) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    Ok(
        match runtime.block_on(server::healthcheck(http_addr, timeout)) {
            Ok(()) => {
                // Alive. Say what is paused (it does not make the task unhealthy).
                if let Ok(lines) = runtime.block_on(server::not_ready(http_addr, timeout)) {
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
