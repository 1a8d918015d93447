//! The store's thread: it owns the connection and works through the calls of every task.
//!
//! Calls arrive on a queue. Each round takes every call waiting (at most [`MAX_ROUND`]), runs each
//! in a savepoint of one `BEGIN IMMEDIATE` transaction and answers them only once that
//! transaction is committed. A busy store thus syncs its log once per round instead of once per
//! call (a group commit: in WAL mode with `synchronous = FULL` every commit is an `fsync`), and
//! nothing is answered before it is durable, exactly as with a commit per call. A quiet store
//! has rounds of one call: nothing waits for company.
//!
//! A call either happens whole or not at all: one that returns an error or panics is rolled
//! back to its savepoint, without touching the other calls of its round. A round that cannot
//! begin or commit answers each of its calls with that error, none of their writes kept.

use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, mpsc};

use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use super::classify;
use crate::store::StoreError;

/// The most calls one round (one transaction, one sync) takes.
const MAX_ROUND: usize = 64;

/// One store call waiting for the store's thread.
pub(super) trait Call: Send {
    /// Runs the call on the round's transaction; its result is kept until the round ends.
    fn run(&mut self, conn: &Connection);
    /// Whether the call ran to an `Ok`: anything else is rolled back to its savepoint.
    fn succeeded(&self) -> bool;
    /// Answers the caller: the call's own result once the round is committed, or `round`'s
    /// error when it was not.
    fn answer(self: Box<Self>, round: Result<(), &RoundError>);
}

/// Why a round's calls were not kept: the transaction could not begin, or not commit.
pub(super) struct RoundError {
    unavailable: bool,
    message: String,
}

impl RoundError {
    fn new(location: &str, step: &str, err: rusqlite::Error) -> Self {
        match classify(location, step, err) {
            StoreError::Unavailable(message) => RoundError {
                unavailable: true,
                message,
            },
            other => RoundError {
                unavailable: false,
                message: other.to_string(),
            },
        }
    }

    fn to_error(&self, op: &str) -> StoreError {
        let message = format!("{} (while {op} was in it)", self.message);
        if self.unavailable {
            StoreError::Unavailable(message)
        } else {
            StoreError::Fatal(message)
        }
    }
}

/// A call and the channel its caller waits on.
pub(super) struct Pending<T, F> {
    op: &'static str,
    location: Arc<str>,
    work: Option<F>,
    result: Option<Result<T, StoreError>>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Pending<T, F> {
    pub(super) fn new(
        op: &'static str,
        location: Arc<str>,
        work: F,
        reply: oneshot::Sender<Result<T, StoreError>>,
    ) -> Self {
        Pending {
            op,
            location,
            work: Some(work),
            result: None,
            reply,
        }
    }
}

impl<T, F> Call for Pending<T, F>
where
    T: Send,
    F: FnOnce(&Connection) -> Result<T, StoreError> + Send,
{
    fn run(&mut self, conn: &Connection) {
        if let Some(work) = self.work.take() {
            // A panic leaves `result` empty: the caller hears that its call was aborted.
            if let Ok(result) = std::panic::catch_unwind(AssertUnwindSafe(|| work(conn))) {
                self.result = Some(result);
            }
        }
    }

    fn succeeded(&self) -> bool {
        matches!(self.result, Some(Ok(_)))
    }

    fn answer(self: Box<Self>, round: Result<(), &RoundError>) {
        let out = match round {
            Err(round) => Err(round.to_error(self.op)),
            Ok(()) => self.result.unwrap_or_else(|| {
                Err(StoreError::Fatal(format!(
                    "sqlite store {}: {} aborted",
                    self.location, self.op
                )))
            }),
        };
        // The caller may have gone (cancelled); the call still ran to its end.
        let _ = self.reply.send(out);
    }
}

/// Serves `queue` until every sender is gone.
pub(super) fn serve(
    conn: Arc<Mutex<Connection>>,
    queue: mpsc::Receiver<Box<dyn Call>>,
    location: Arc<str>,
) {
    while let Ok(first) = queue.recv() {
        let mut round = vec![first];
        while round.len() < MAX_ROUND {
            match queue.try_recv() {
                Ok(call) => round.push(call),
                Err(_) => break,
            }
        }
        // Nothing panics while the lock is held (calls' panics are caught), but a poisoned lock
        // would still hold a usable connection.
        let mut conn = conn.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        run_round(&mut conn, round, &location);
    }
}

fn run_round(conn: &mut Connection, mut round: Vec<Box<dyn Call>>, location: &str) {
    let mut tx = match conn.transaction_with_behavior(TransactionBehavior::Immediate) {
        Ok(tx) => tx,
        Err(e) => {
            let err = RoundError::new(location, "begin", e);
            round.into_iter().for_each(|call| call.answer(Err(&err)));
            return;
        }
    };
    for call in &mut round {
        let kept = tx.savepoint().and_then(|savepoint| {
            call.run(&savepoint);
            if call.succeeded() {
                savepoint.commit()
            } else {
                // Back to where the call began (the savepoint's drop behaviour), then released.
                savepoint.finish()
            }
        });
        if let Err(e) = kept {
            // The round's transaction is in doubt: keep none of it (dropping it rolls back).
            let err = RoundError::new(location, "savepoint", e);
            drop(tx);
            round.into_iter().for_each(|call| call.answer(Err(&err)));
            return;
        }
    }
    match tx.commit() {
        Ok(()) => round.into_iter().for_each(|call| call.answer(Ok(()))),
        Err(e) => {
            let err = RoundError::new(location, "commit", e);
            round.into_iter().for_each(|call| call.answer(Err(&err)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Answer = oneshot::Receiver<Result<i64, StoreError>>;

    fn connection() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "PRAGMA foreign_keys = ON;
             CREATE TABLE parent (id INTEGER PRIMARY KEY);
             CREATE TABLE t (k TEXT PRIMARY KEY,
                             parent INTEGER REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);",
        )
        .unwrap();
        conn
    }

    /// A call inserting `k` (with `parent`, checked only at commit), then ending with `end`.
    fn insert(
        k: &'static str,
        parent: Option<i64>,
        end: fn() -> Result<i64, StoreError>,
    ) -> (Box<dyn Call>, Answer) {
        let (reply, answer) = oneshot::channel();
        let work = move |conn: &Connection| {
            conn.execute(
                "INSERT INTO t (k, parent) VALUES (?1, ?2)",
                rusqlite::params![k, parent],
            )
            .map_err(|e| StoreError::Fatal(e.to_string()))?;
            end()
        };
        (
            Box::new(Pending::new("insert", "test.db".into(), work, reply)),
            answer,
        )
    }

    fn keys(conn: &Connection) -> Vec<String> {
        let mut stmt = conn.prepare("SELECT k FROM t ORDER BY k").unwrap();
        stmt.query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn each_call_of_a_round_happens_whole_or_not_at_all() {
        let mut conn = connection();
        let (ok, ok_answer) = insert("kept", None, || Ok(1));
        let (refused, refused_answer) =
            insert("refused", None, || Err(StoreError::LostClaim("m".into())));
        let (panics, panics_answer) = insert("panicked", None, || panic!("a bug"));
        let (after, after_answer) = insert("kept-too", None, || Ok(2));
        run_round(&mut conn, vec![ok, refused, panics, after], "test.db");

        assert_eq!(keys(&conn), ["kept", "kept-too"]);
        assert!(matches!(ok_answer.blocking_recv().unwrap(), Ok(1)));
        assert!(matches!(after_answer.blocking_recv().unwrap(), Ok(2)));
        assert!(matches!(
            refused_answer.blocking_recv().unwrap(),
            Err(StoreError::LostClaim(_))
        ));
        match panics_answer.blocking_recv().unwrap() {
            Err(StoreError::Fatal(msg)) => assert!(msg.contains("insert aborted"), "{msg}"),
            other => panic!("expected Fatal, got {other:?}"),
        }
        assert!(conn.is_autocommit(), "the round's transaction is over");
    }

    #[test]
    fn a_round_that_cannot_commit_keeps_none_of_its_calls_and_says_so_to_each() {
        let mut conn = connection();
        // The second call's row breaks a constraint that is checked only at commit: the round
        // fails as a whole, after both calls had succeeded on their own.
        let (first, first_answer) = insert("first", None, || Ok(1));
        let (second, second_answer) = insert("second", Some(42), || Ok(2));
        run_round(&mut conn, vec![first, second], "test.db");

        assert!(keys(&conn).is_empty(), "nothing of a failed round is kept");
        for answer in [first_answer, second_answer] {
            match answer.blocking_recv().unwrap() {
                Err(StoreError::Fatal(msg)) => {
                    assert!(msg.contains("commit"), "{msg}");
                    assert!(msg.contains("while insert was in it"), "{msg}");
                }
                other => panic!("expected the commit's error, got {other:?}"),
            }
        }
        // The connection is fine for the next round.
        let (next, next_answer) = insert("next", None, || Ok(3));
        run_round(&mut conn, vec![next], "test.db");
        assert!(matches!(next_answer.blocking_recv().unwrap(), Ok(3)));
        assert_eq!(keys(&conn), ["next"]);
    }

    #[test]
    fn a_round_that_cannot_begin_answers_every_call_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busy.db");
        let mut conn = Connection::open(&path).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; CREATE TABLE t (k TEXT PRIMARY KEY, parent INTEGER);",
        )
        .unwrap();
        // Another process holds the write lock, and this connection does not wait for it.
        let other = Connection::open(&path).unwrap();
        other.execute_batch("BEGIN IMMEDIATE").unwrap();
        conn.busy_timeout(std::time::Duration::ZERO).unwrap();

        let (call, answer) = insert("blocked", None, || Ok(1));
        run_round(&mut conn, vec![call], "busy.db");
        match answer.blocking_recv().unwrap() {
            Err(StoreError::Unavailable(msg)) => assert!(msg.contains("begin"), "{msg}"),
            other => panic!("expected Unavailable, got {other:?}"),
        }
        other.execute_batch("ROLLBACK").unwrap();
        assert!(keys(&conn).is_empty());
    }
}
