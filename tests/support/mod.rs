//! Shared helpers for integration tests. Each test binary includes this with `mod support;`
//! and uses only what it needs, hence the blanket `dead_code` allowance.
#![allow(dead_code)]

pub mod moto;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A name no other test (in this binary, or a concurrent run of it) uses, for tables and queues
/// on the shared moto_server so that tests can run in parallel. Short enough for SQS (80 chars)
/// and valid for DynamoDB and SNS (letters, digits, `-`).
pub fn unique(prefix: &str) -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}
