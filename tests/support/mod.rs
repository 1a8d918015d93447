//! Shared helpers of the two integration test binaries (`tests/it`, `tests/e2e`), each of which
//! declares this folder as its `support` module: unique names for resources on moto_server, and
//! moto_server itself ([`moto`]).

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
