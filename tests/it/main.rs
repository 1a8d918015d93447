//! The integration tests that do not run the worker end to end: decoding, mapping and rendering
//! (snapshots in `tests/snapshots/`), the CLI, the exact HTTP contracts of Jira, ServiceNow,
//! Security Hub and Detective (wiremock), the store, replay and secrets on moto_server, the
//! health / metrics server, and status sync against the simulator.
//!
//! One test binary rather than one per file: every binary links the library and the AWS SDK, and
//! those links were most of the time spent building the tests. Each former file is a module, so a
//! test is still found by its file's name: `cargo test --test it jira_contract::`.
//!
//! The worker end to end is the other binary, `tests/e2e`: its timing tests need the process to
//! themselves, and its in-process workers move the process-wide in-flight gauge that [`server`]
//! counts on holding still.

#[path = "../support/mod.rs"]
mod support;
mod sync_harness;

mod acceptance;
mod cli;
mod context;
mod decode;
mod detective_contract;
mod fuzz_regressions;
mod grafana_dashboard;
mod group;
mod group_sync;
mod http_resilience;
mod jira_contract;
mod mapping;
mod plan;
mod preflight_contract;
mod reconcile_contract;
mod render;
mod render_snapshots;
mod render_stream;
mod replay;
mod secrets;
mod securityhub_contract;
mod server;
mod servicenow_contract;
mod sla;
mod store;
mod sync;
mod webhook;

mod aws_requests;
mod poller;
