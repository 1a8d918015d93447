//! [`BatchingWriter`] against a recording inner writer, under paused tokio time.

use std::sync::Mutex;

use super::*;
use crate::finding::{WorkflowStatus, WriteBackId};
use crate::retry::Retryable;

const WINDOW: Duration = Duration::from_millis(200);

/// Records every call it gets (when, and what); refuses the findings in `refuse` as unprocessed
/// and fails a whole call that names `fail_on`.
#[derive(Default)]
struct Inner {
    calls: Mutex<Vec<(Instant, Vec<WorkflowUpdate>)>>,
    refuse: Vec<String>,
    fail_on: Option<String>,
    panic_on: Option<String>,
}

impl Inner {
    fn calls(&self) -> Vec<(Instant, Vec<WorkflowUpdate>)> {
        self.calls.lock().unwrap().clone()
    }

    fn ids_per_call(&self) -> Vec<Vec<String>> {
        self.calls()
            .into_iter()
            .map(|(_, updates)| updates.into_iter().map(|u| u.finding_id).collect())
            .collect()
    }
}

impl FindingWriter for Inner {
    fn write(&self, updates: Vec<WorkflowUpdate>) -> BoxFuture<'_, Outcome> {
        Box::pin(async move {
            self.calls
                .lock()
                .unwrap()
                .push((Instant::now(), updates.clone()));
            if let Some(id) = &self.panic_on
                && updates.iter().any(|u| &u.finding_id == id)
            {
                panic!("inner writer bug ({id})");
            }
            if let Some(id) = &self.fail_on
                && updates.iter().any(|u| &u.finding_id == id)
            {
                return Err(WriteError::Transient(format!("throttled ({id})")));
            }
            let unprocessed: Vec<Unprocessed> = updates
                .iter()
                .filter(|u| self.refuse.contains(&u.finding_id))
                .map(|u| Unprocessed {
                    finding_id: u.finding_id.clone(),
                    code: "FindingNotFound".into(),
                    message: "no such finding".into(),
                })
                .collect();
            Ok(WriteReport {
                processed: updates.len() - unprocessed.len(),
                unprocessed,
            })
        })
    }
}

fn update(id: &str, note: &str) -> WorkflowUpdate {
    WorkflowUpdate::new(
        WriteBackId::Asff {
            id: format!("arn:finding/{id}"),
            product_arn: "arn:aws:securityhub:us-east-1::product/aws/guardduty".into(),
        },
        id,
        Some(WorkflowStatus::Notified),
        None,
        note,
    )
}

fn batching(inner: &Arc<Inner>, window: Duration) -> Arc<BatchingWriter> {
    Arc::new(BatchingWriter::new(
        Arc::clone(inner) as Arc<dyn FindingWriter>,
        window,
    ))
}

/// Starts one caller per batch of updates, in this order.
fn callers(
    writer: &Arc<BatchingWriter>,
    batches: Vec<Vec<WorkflowUpdate>>,
) -> Vec<tokio::task::JoinHandle<Outcome>> {
    batches
        .into_iter()
        .map(|updates| {
            let writer = Arc::clone(writer);
            tokio::spawn(async move { writer.write(updates).await })
        })
        .collect()
}

async fn outcomes(handles: Vec<tokio::task::JoinHandle<Outcome>>) -> Vec<Outcome> {
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.expect("caller task"));
    }
    out
}

#[tokio::test(start_paused = true)]
async fn concurrent_callers_with_one_note_share_one_inner_call_after_the_window() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let started = Instant::now();
    let batches = (0..20)
        .map(|n| vec![update(&format!("f-{n}"), "Tracked in jira SEC-1")])
        .collect();
    for outcome in outcomes(callers(&writer, batches)).await {
        let report = outcome.expect("written");
        assert_eq!(report.processed, 1);
        assert!(report.unprocessed.is_empty());
    }
    let calls = inner.calls();
    assert_eq!(calls.len(), 1, "{:?}", inner.ids_per_call());
    assert_eq!(calls[0].1.len(), 20);
    assert_eq!(
        calls[0].0 - started,
        WINDOW,
        "sent when the first request's window ends"
    );
}

#[tokio::test(start_paused = true)]
async fn distinct_notes_still_go_to_the_inner_writer_in_one_call() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let batches = (0..5)
        .map(|n| {
            vec![update(
                &format!("f-{n}"),
                &format!("Tracked in jira SEC-{n}"),
            )]
        })
        .collect();
    for outcome in outcomes(callers(&writer, batches)).await {
        assert_eq!(outcome.expect("written").processed, 1);
    }
    assert_eq!(
        inner.ids_per_call(),
        vec![vec!["f-0", "f-1", "f-2", "f-3", "f-4"]],
        "one call, in arrival order; the inner writer splits it per note"
    );
}

#[tokio::test(start_paused = true)]
async fn a_full_call_goes_out_without_waiting_for_the_window() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let started = Instant::now();
    let batches = (0..MAX_FINDINGS_PER_CALL)
        .map(|n| vec![update(&format!("f-{n}"), "same")])
        .collect();
    for outcome in outcomes(callers(&writer, batches)).await {
        outcome.expect("written");
    }
    let calls = inner.calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].1.len(), MAX_FINDINGS_PER_CALL);
    assert_eq!(calls[0].0, started, "no window once a call is full");
}

#[tokio::test(start_paused = true)]
async fn two_updates_of_one_finding_go_out_in_two_calls_in_arrival_order() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let started = Instant::now();
    let (first, second, other) = tokio::join!(
        writer.write(vec![update("f-1", "first")]),
        writer.write(vec![update("f-1", "second")]),
        writer.write(vec![update("f-2", "other")]),
    );
    for outcome in [first, second, other] {
        assert_eq!(outcome.expect("written").processed, 1);
    }
    let calls = inner.calls();
    let notes: Vec<Vec<&str>> = calls
        .iter()
        .map(|(_, updates)| updates.iter().map(|u| u.note.as_str()).collect())
        .collect();
    assert_eq!(notes, vec![vec!["first", "other"], vec!["second"]]);
    assert_eq!(
        calls[1].0, calls[0].0,
        "the left-over set goes out right after, without a second window"
    );
    assert_eq!(calls[0].0 - started, WINDOW);
}

#[tokio::test(start_paused = true)]
async fn a_request_behind_a_held_one_does_not_overtake_it_for_a_shared_finding() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    // The second request collides on f-1 and is held; the third names f-2, which the held one
    // also names, so it must wait behind it rather than go out first.
    let (a, b, c) = tokio::join!(
        writer.write(vec![update("f-1", "a")]),
        writer.write(vec![update("f-1", "b"), update("f-2", "b")]),
        writer.write(vec![update("f-2", "c")]),
    );
    assert_eq!(a.expect("a").processed, 1);
    assert_eq!(b.expect("b").processed, 2);
    assert_eq!(c.expect("c").processed, 1);
    assert_eq!(
        inner.ids_per_call(),
        vec![vec!["f-1"], vec!["f-1", "f-2"], vec!["f-2"]]
    );
}

#[tokio::test(start_paused = true)]
async fn a_failed_call_fails_every_caller_in_it_and_only_them() {
    let inner = Arc::new(Inner {
        fail_on: Some("f-bad".into()),
        ..Inner::default()
    });
    let writer = batching(&inner, WINDOW);
    let (ok_first, bad, ok_later) = tokio::join!(
        writer.write(vec![update("f-1", "n")]),
        writer.write(vec![update("f-bad", "n")]),
        // Collides with the first caller: goes out in the next call, which succeeds.
        writer.write(vec![update("f-1", "again")]),
    );
    for failed in [ok_first, bad] {
        let err = failed.expect_err("in the failed call");
        assert!(err.to_string().contains("throttled (f-bad)"), "{err}");
    }
    assert_eq!(ok_later.expect("next call").processed, 1);
    assert_eq!(inner.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn unprocessed_entries_go_to_the_caller_that_sent_them() {
    let inner = Arc::new(Inner {
        refuse: vec!["f-gone".into()],
        ..Inner::default()
    });
    let writer = batching(&inner, WINDOW);
    let (mine, theirs) = tokio::join!(
        writer.write(vec![update("f-1", "n"), update("f-gone", "n")]),
        writer.write(vec![update("f-2", "n")]),
    );
    let mine = mine.expect("written");
    assert_eq!(mine.processed, 1);
    assert_eq!(mine.unprocessed.len(), 1);
    assert_eq!(mine.unprocessed[0].finding_id, "f-gone");
    assert_eq!(mine.unprocessed[0].code, "FindingNotFound");
    let theirs = theirs.expect("written");
    assert_eq!(theirs.processed, 1);
    assert!(theirs.unprocessed.is_empty());
    assert_eq!(inner.calls().len(), 1);
}

#[tokio::test(start_paused = true)]
async fn window_zero_writes_each_call_through_at_once() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, Duration::ZERO);
    let started = Instant::now();
    let (a, b) = tokio::join!(
        writer.write(vec![update("f-1", "n")]),
        writer.write(vec![update("f-2", "n")]),
    );
    a.expect("a");
    b.expect("b");
    let calls = inner.calls();
    assert_eq!(inner.ids_per_call(), vec![vec!["f-1"], vec!["f-2"]]);
    assert!(calls.iter().all(|(at, _)| *at == started), "no waiting");
}

#[tokio::test(start_paused = true)]
async fn a_caller_that_stops_waiting_does_not_stall_the_others() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let handles = callers(
        &writer,
        vec![
            vec![update("f-1", "n")],
            vec![update("f-2", "n")],
            vec![update("f-3", "n")],
        ],
    );
    // Let every caller enqueue, then abort the middle one, as shutdown does with in-flight work.
    tokio::task::yield_now().await;
    handles[1].abort();
    let mut results = Vec::new();
    for handle in handles {
        results.push(handle.await);
    }
    assert!(results[1].as_ref().is_err_and(|e| e.is_cancelled()));
    assert_eq!(results[0].as_ref().unwrap().as_ref().unwrap().processed, 1);
    assert_eq!(results[2].as_ref().unwrap().as_ref().unwrap().processed, 1);

    assert_eq!(
        inner.ids_per_call(),
        vec![vec!["f-1", "f-2", "f-3"]],
        "the aborted caller's update had been queued, and still went out"
    );

    // The flusher is still there for later callers.
    let later = writer.write(vec![update("f-4", "n")]).await;
    assert_eq!(later.expect("written").processed, 1);
    assert_eq!(inner.calls().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn the_window_starts_with_the_first_waiting_request() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    let started = Instant::now();
    let early = callers(&writer, vec![vec![update("f-1", "n")]]);
    tokio::time::sleep(WINDOW / 2).await;
    let late = callers(&writer, vec![vec![update("f-2", "n")]]);
    outcomes(early).await[0].as_ref().expect("early");
    outcomes(late).await[0].as_ref().expect("late");
    let calls = inner.calls();
    assert_eq!(inner.ids_per_call(), vec![vec!["f-1", "f-2"]]);
    assert_eq!(calls[0].0 - started, WINDOW, "not extended by the late one");
}

#[tokio::test(start_paused = true)]
async fn the_flusher_ends_when_the_writer_is_dropped() {
    let inner = Arc::new(Inner::default());
    let writer = batching(&inner, WINDOW);
    writer
        .write(vec![update("f-1", "n")])
        .await
        .expect("written");
    assert_eq!(Arc::strong_count(&inner), 3, "test, writer, flusher");
    drop(writer);
    // The flusher drops its handle on the inner writer when it ends.
    while Arc::strong_count(&inner) > 1 {
        tokio::task::yield_now().await;
    }
}

#[tokio::test(start_paused = true)]
async fn if_the_flusher_dies_its_callers_fail_transiently_and_later_writes_go_straight_through() {
    let inner = Arc::new(Inner {
        panic_on: Some("f-panic".into()),
        ..Inner::default()
    });
    let writer = batching(&inner, WINDOW);
    let err = writer
        .write(vec![update("f-panic", "n")])
        .await
        .expect_err("the flush panicked");
    assert!(err.is_transient(), "{err}");
    let started = Instant::now();
    let report = writer
        .write(vec![update("f-1", "n")])
        .await
        .expect("written without the queue");
    assert_eq!(report.processed, 1);
    let calls = inner.calls();
    assert_eq!(inner.ids_per_call(), vec![vec!["f-panic"], vec!["f-1"]]);
    assert_eq!(calls[1].0, started, "no window without the flusher");
}

#[test]
fn the_window_setting_is_whole_milliseconds_up_to_a_second() {
    let window = |v: Option<&str>| {
        window_from_lookup(|name| {
            assert_eq!(name, WRITEBACK_WINDOW_ENV);
            v.map(str::to_owned)
        })
    };
    assert_eq!(window(None).unwrap(), DEFAULT_WINDOW);
    assert_eq!(window(Some("")).unwrap(), DEFAULT_WINDOW);
    assert_eq!(window(Some("0")).unwrap(), Duration::ZERO);
    assert_eq!(window(Some(" 50 ")).unwrap(), Duration::from_millis(50));
    assert_eq!(window(Some("1000")).unwrap(), MAX_WINDOW);
    for bad in ["1001", "-1", "0.5", "200ms", "soon"] {
        let err = window(Some(bad)).unwrap_err().to_string();
        assert!(err.contains(WRITEBACK_WINDOW_ENV), "{bad}: {err}");
    }
}
