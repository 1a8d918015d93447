//! The worker end to end, on moto_server (SQS, DynamoDB, EventBridge, SNS) and the simulator
//! (Jira, ServiceNow, Security Hub): [`worker`] runs it in this process or as the real binary and
//! checks what an operator would (tickets, queue, DLQ); [`ops`] operates the binary as an on-call
//! engineer does. [`bench`] sets up each test.
//!
//! A binary of its own, apart from `tests/it`: the tests that measure time take
//! [`bench::exclusive`] so that nothing else runs beside them, which holds only for the tests of
//! this binary; and the workers it runs in-process move process-wide metrics (the in-flight
//! gauge) that tests in `tests/it` read.

mod bench;
#[path = "../support/mod.rs"]
mod support;

mod ops;
mod preflight;
mod reconcile;
mod worker;

mod acceptance;
mod groups;
mod poller;
mod sla;

mod servicenow_e2e;
