//! decode → route → render over every well-formed fixture with the shipped mapping files: the CPU
//! cost of one finding, which caps what one core can turn into ticket payloads (target: at least
//! 20,000 findings per second, i.e. at most 50 µs each; see BENCHMARKS.md).
//!
//! Criterion's "thrpt" line is findings per second; the per-finding time is one over it. The
//! stages are also measured alone so a regression points at the stage that caused it.
//!
//! The `cpu_time` variant counts this thread's CPU time instead of wall time: on a shared 2-core
//! machine other processes take the core away mid-measurement, and wall time then measures the
//! neighbours. "Findings per second on one core" is a CPU-time figure, so that is the one
//! BENCHMARKS.md holds against the target.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};

use findings_bridge::finding::{self, Finding};
use findings_bridge::mapping::{self, Mappings};
use findings_bridge::render::{JiraFlavor, RenderOptions, render_route, render_route_shared};

/// The message bodies a worker would receive: every fixture except the deliberately broken ones.
fn fixture_mix() -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| !n.starts_with("malformed-"))
        })
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "no fixtures in {}", dir.display());
    paths
        .into_iter()
        .map(|p| {
            let bytes =
                std::fs::read(&p).unwrap_or_else(|e| panic!("reading {}: {e}", p.display()));
            (p.display().to_string(), bytes)
        })
        .collect()
}

fn shipped_mappings() -> Mappings {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("mappings");
    // A fixed clock keeps `now()` templates and DateRange criteria identical across runs.
    let now = chrono::DateTime::parse_from_rfc3339("2025-06-01T12:00:00Z")
        .map(|t| t.with_timezone(&chrono::Utc))
        .unwrap_or_else(|e| panic!("fixed clock: {e}"));
    mapping::load_with_clock(&dir, Arc::new(move || now))
        .unwrap_or_else(|e| panic!("the shipped mappings must load: {e}"))
}

/// One message through the whole CPU path; returns the number of routes rendered so the work
/// cannot be optimised away and so the setup check below can see that routing found something.
fn process(mappings: &Mappings, opts: &RenderOptions, body: &[u8]) -> usize {
    let findings = finding::decode(body).unwrap_or_else(|e| panic!("fixture must decode: {e}"));
    let mut rendered = 0;
    for f in findings.into_iter().map(Arc::new) {
        let application = mappings.application_for(&f);
        for rule in mappings.route(&f) {
            // As `render` does: the templates read the decoded finding in place.
            let ticket = render_route_shared(&mappings.engine, rule, &f, application, opts)
                .unwrap_or_else(|e| panic!("fixture must render: {e}"));
            black_box(&ticket.payload);
            rendered += 1;
        }
    }
    rendered
}

/// CPU time consumed by the calling thread so far.
#[cfg(target_os = "linux")]
fn thread_cpu_time() -> Duration {
    #[repr(C)]
    struct Timespec {
        tv_sec: i64,
        tv_nsec: i64,
    }
    // Linux's CLOCK_THREAD_CPUTIME_ID; glibc is linked by std already, so no crate is needed.
    const CLOCK_THREAD_CPUTIME_ID: i32 = 3;
    unsafe extern "C" {
        fn clock_gettime(clock: i32, tp: *mut Timespec) -> i32;
    }
    let mut ts = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, exclusively borrowed timespec (two 64-bit fields on 64-bit Linux).
    let rc = unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(
        u64::try_from(ts.tv_sec).unwrap_or_default(),
        u32::try_from(ts.tv_nsec).unwrap_or_default(),
    )
}

/// Elsewhere there is no portable thread clock: fall back to wall time (and say so).
#[cfg(not(target_os = "linux"))]
fn thread_cpu_time() -> Duration {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

fn pipeline(c: &mut Criterion) {
    let mix = fixture_mix();
    let mappings = shipped_mappings();
    let cloud = RenderOptions {
        jira: JiraFlavor::Cloud,
    };
    let data_center = RenderOptions {
        jira: JiraFlavor::DataCenter,
    };

    let decoded: Vec<Finding> = mix
        .iter()
        .flat_map(|(name, body)| {
            finding::decode(body).unwrap_or_else(|e| panic!("{name} must decode: {e}"))
        })
        .collect();
    let findings_per_mix = decoded.len() as u64;
    let routed: Vec<(&Finding, Vec<&mapping::spec::Rule>)> =
        decoded.iter().map(|f| (f, mappings.route(f))).collect();
    let routes_per_mix: usize = routed.iter().map(|(_, r)| r.len()).sum();
    // A benchmark where nothing routes would measure decode only and flatter the figure.
    assert!(
        routes_per_mix > 0,
        "no fixture routes with the shipped mappings"
    );
    eprintln!(
        "pipeline mix: {} messages, {findings_per_mix} findings, {routes_per_mix} routes rendered per pass",
        mix.len()
    );

    let mut group = c.benchmark_group("pipeline");
    group.throughput(Throughput::Elements(findings_per_mix));
    group.bench_function("decode_route_render/jira_cloud", |b| {
        b.iter(|| {
            mix.iter()
                .map(|(_, body)| process(&mappings, &cloud, black_box(body)))
                .sum::<usize>()
        })
    });
    group.bench_function("decode_route_render/jira_cloud/cpu_time", |b| {
        b.iter_custom(|iters| {
            let wall = Instant::now();
            let start = thread_cpu_time();
            for _ in 0..iters {
                black_box(
                    mix.iter()
                        .map(|(_, body)| process(&mappings, &cloud, black_box(body)))
                        .sum::<usize>(),
                );
            }
            let cpu = thread_cpu_time().saturating_sub(start);
            // Sanity: a thread cannot use more CPU than wall time (else the clock is wrong).
            assert!(cpu <= wall.elapsed() + Duration::from_millis(1));
            cpu
        })
    });
    group.bench_function("decode_route_render/jira_data_center", |b| {
        b.iter(|| {
            mix.iter()
                .map(|(_, body)| process(&mappings, &data_center, black_box(body)))
                .sum::<usize>()
        })
    });
    group.bench_function("decode", |b| {
        b.iter(|| {
            mix.iter()
                .map(|(_, body)| {
                    finding::decode(black_box(body))
                        .map(|f| f.len())
                        .unwrap_or_default()
                })
                .sum::<usize>()
        })
    });
    group.bench_function("route", |b| {
        b.iter(|| {
            decoded
                .iter()
                .map(|f| mappings.route(black_box(f)).len())
                .sum::<usize>()
        })
    });
    group.bench_function("render", |b| {
        b.iter(|| {
            let mut n = 0;
            for (f, rules) in &routed {
                let application = mappings.application_for(f);
                for rule in rules {
                    if let Ok(t) = render_route(&mappings.engine, rule, f, application, &cloud) {
                        black_box(&t.payload);
                        n += 1;
                    }
                }
            }
            n
        })
    });
    group.finish();
}

/// Markdown → ADF and wiki on hostile input (unclosed brackets, backticks, emphasis): at 10k and
/// 100k characters, the time per character stays the same when the converters are linear; a
/// quadratic one shows as 10× per character at 100k.
fn markdown_hostile(c: &mut Criterion) {
    use findings_bridge::ticket::jira::format::{adf::markdown_to_adf, wiki::markdown_to_wiki};
    let mut group = c.benchmark_group("markdown_hostile");
    group.sample_size(10);
    for n in [10_000usize, 100_000] {
        let input = format!("{}{}", "[".repeat(n), "a](https://x.test)") + &"`**a".repeat(n / 4);
        group.throughput(Throughput::Bytes(input.len() as u64));
        group.bench_function(format!("brackets_backticks_emphasis/{n}"), |b| {
            b.iter(|| {
                black_box(markdown_to_adf(black_box(&input)));
                black_box(markdown_to_wiki(black_box(&input)));
            })
        });
    }
    group.finish();
}

criterion_group!(benches, pipeline, markdown_hostile);
criterion_main!(benches);
