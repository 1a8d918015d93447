//! Fuzzes `finding::decode`, the first code that touches bytes from SQS. The properties live in
//! `fuzz/src/lib.rs`, shared with `tests/it/fuzz_regressions.rs`.
#![no_main]

use findings_bridge_fuzz as checks;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| checks::check_decode(data));
