//! The SQS calls the worker makes, behind a small trait so the worker is testable without AWS,
//! and the one real implementation on `aws-sdk-sqs`.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_sqs::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{
    DeleteMessageBatchRequestEntry, MessageAttributeValue, MessageSystemAttributeName,
};

use crate::ticket::BoxFuture;

/// The message attributes the bridge writes (all named `fb-*`): the worker when it dead-letters
/// or parks a message, `replay` when it reads them back. One list, so producer and consumer
/// cannot drift apart.
pub mod attributes {
    /// Prefix of every attribute the bridge adds.
    pub const PREFIX: &str = "fb-";
    /// The failure's kind (`decode`, `render`, `ticket`, `store`, `config`).
    pub const ERROR_KIND: &str = "fb-error-kind";
    /// The failure's message, cut to fit SQS's attribute size.
    pub const ERROR: &str = "fb-error";
    /// The id of the message that failed (the DLQ copy has its own).
    pub const ORIGINAL_MESSAGE_ID: &str = "fb-original-message-id";
    /// How often the queue had delivered the message when it was dead-lettered.
    pub const RECEIVE_COUNT: &str = "fb-receive-count";
    /// When the message first failed (RFC 3339), kept across replays and parking.
    pub const FIRST_FAILURE: &str = "fb-first-failure";
    /// The teams whose routes failed; a replay redoes only these.
    pub const TEAMS: &str = "fb-teams";
    /// How often the message was parked while a connection or rule it needs was paused.
    pub const PARKED: &str = "fb-parked";
}

/// Message attributes the worker reads back when a message is received: a replayed DLQ message
/// keeps the time of its first failure instead of restarting the clock, and a parked message
/// (re-sent while a connection or rule it needs was paused) counts how often it was parked.
pub const READ_ATTRIBUTES: &[&str] = &[attributes::FIRST_FAILURE, attributes::PARKED];

/// Where a queue built with [`SqsQueue::reading_all_attributes`] puts the message's
/// `SentTimestamp` (milliseconds since the epoch) in [`ReceivedMessage::attributes`]. SQS forbids
/// message attribute names starting with `AWS.`, so it can never collide with a real attribute,
/// and it can never be sent back by mistake (SQS would refuse it).
pub const SENT_TIMESTAMP_ATTRIBUTE: &str = "AWS.SentTimestamp";

/// How much longer than its long-poll wait one receive attempt may take.
const RECEIVE_TIMEOUT_MARGIN: Duration = Duration::from_secs(5);

/// SQS caps `ReceiveMessage` and `DeleteMessageBatch` at 10 entries.
pub const MAX_MESSAGES_PER_CALL: usize = 10;

/// A received message with what the worker needs of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// Valid for this delivery only; a later delivery of the same message brings a newer one,
    /// which is the one to use from then on.
    pub receipt_handle: String,
    pub body: String,
    /// `ApproximateReceiveCount`: 1 on the first delivery.
    pub receive_count: u32,
    /// String message attributes among [`READ_ATTRIBUTES`] (every string or number attribute,
    /// plus [`SENT_TIMESTAMP_ATTRIBUTE`], on a queue built with
    /// [`SqsQueue::reading_all_attributes`]).
    pub attributes: BTreeMap<String, String>,
}

/// One entry of a delete batch; `id` is the caller's, unique within the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteEntry {
    pub id: String,
    pub receipt_handle: String,
}

/// An entry SQS refused to delete (reported inside a successful response).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeleteFailure {
    pub id: String,
    pub code: String,
    pub message: String,
    /// True when the request was at fault (e.g. an expired receipt handle), not SQS.
    pub sender_fault: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum QueueError {
    /// Throttling, timeouts, 5xx, connection trouble: try again shortly.
    #[error("sqs {operation}: transient: {message}")]
    Transient {
        operation: &'static str,
        message: String,
    },
    /// Missing queue, access denied, invalid request: a person must fix it.
    #[error("sqs {operation}: {message}")]
    Permanent {
        operation: &'static str,
        message: String,
    },
}

impl crate::retry::Retryable for QueueError {
    fn retry(&self) -> crate::retry::Retry {
        match self {
            QueueError::Transient { .. } => crate::retry::Retry::LATER,
            QueueError::Permanent { .. } => crate::retry::Retry::Permanent,
        }
    }
}

/// The SQS operations on one queue that the worker uses.
pub trait Queue: Send + Sync {
    /// The queue URL, for logs.
    fn url(&self) -> &str;

    /// Long-polls for up to `max_messages` (1–10) messages, waiting up to `wait` (≤ 20 s), and
    /// hides them for `visibility`. Always asks for `ApproximateReceiveCount`.
    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>>;

    /// Deletes up to 10 messages; returns the entries that failed.
    fn delete_batch<'a>(
        &'a self,
        entries: &'a [DeleteEntry],
    ) -> BoxFuture<'a, Result<Vec<DeleteFailure>, QueueError>>;

    /// Hides (or, with zero, reveals) a message for `timeout` from now.
    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>>;

    /// Sends a message with string message attributes (≤ 10); returns its message id.
    fn send<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, QueueError>>;

    /// [`Queue::send`], delivered only after `delay` (SQS allows up to 15 minutes).
    fn send_delayed<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<String, QueueError>>;
}

/// [`Queue`] on `aws-sdk-sqs`. Endpoint and credentials come from the SDK's own chain
/// (`AWS_ENDPOINT_URL_SQS` works for moto / LocalStack).
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    url: String,
    read_all_attributes: bool,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, url: impl Into<String>) -> SqsQueue {
        SqsQueue {
            client,
            url: url.into(),
            read_all_attributes: false,
        }
    }

    /// Receives every message attribute and the `SentTimestamp`, not just [`READ_ATTRIBUTES`]:
    /// DLQ replay needs the bridge's `fb-*` error attributes to filter on and the producer's own
    /// attributes to send back. The worker does not, and keeps its receives small.
    pub fn reading_all_attributes(mut self) -> SqsQueue {
        self.read_all_attributes = true;
        self
    }
}

/// SQS's limits are whole seconds in `i32`; durations beyond are clamped to what SQS accepts.
fn seconds(d: Duration, max: i32) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(max).min(max)
}

/// An SQS failure as [`crate::aws::errors`] reads it: throttling and outages are transient,
/// everything else (a missing queue, a refused credential, a bad request) needs a person.
fn classify<E>(operation: &'static str, err: SdkError<E>) -> QueueError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    let failure = crate::aws::errors::classify(operation, &err);
    let message = failure.detail;
    if failure.fault.is_transient() {
        QueueError::Transient { operation, message }
    } else {
        QueueError::Permanent { operation, message }
    }
}

impl Queue for SqsQueue {
    fn url(&self) -> &str {
        &self.url
    }

    fn receive(
        &self,
        max_messages: usize,
        wait: Duration,
        visibility: Duration,
    ) -> BoxFuture<'_, Result<Vec<ReceivedMessage>, QueueError>> {
        Box::pin(async move {
            let max = i32::try_from(max_messages.clamp(1, MAX_MESSAGES_PER_CALL)).unwrap_or(1);
            let mut request = self
                .client
                .receive_message()
                .queue_url(&self.url)
                .max_number_of_messages(max)
                .wait_time_seconds(seconds(wait, 20))
                .visibility_timeout(seconds(visibility, 43_200))
                .message_system_attribute_names(
                    MessageSystemAttributeName::ApproximateReceiveCount,
                );
            if self.read_all_attributes {
                request = request
                    .message_attribute_names("All")
                    .message_system_attribute_names(MessageSystemAttributeName::SentTimestamp);
            } else {
                for name in READ_ATTRIBUTES {
                    request = request.message_attribute_names(*name);
                }
            }
            // The long poll itself takes up to `wait`: give this call room beyond the client's
            // ordinary attempt and operation timeouts, but no more.
            let long_poll = aws_sdk_sqs::config::timeout::TimeoutConfig::builder()
                .operation_attempt_timeout(wait + RECEIVE_TIMEOUT_MARGIN)
                .operation_timeout(wait + RECEIVE_TIMEOUT_MARGIN * 3)
                .build();
            let output = request
                .customize()
                .config_override(aws_sdk_sqs::config::Builder::default().timeout_config(long_poll))
                .send()
                .await
                .map_err(|e| classify("ReceiveMessage", e))?;
            let mut messages = Vec::with_capacity(output.messages().len());
            for m in output.messages() {
                // A message without id or handle cannot be acknowledged: skip it, it comes back.
                let (Some(id), Some(handle)) = (m.message_id(), m.receipt_handle()) else {
                    tracing::warn!("SQS returned a message without id or receipt handle");
                    continue;
                };
                let receive_count = m
                    .attributes()
                    .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(1);
                let mut attributes: BTreeMap<String, String> = m
                    .message_attributes()
                    .map(|attrs| {
                        attrs
                            .iter()
                            .filter_map(|(k, v)| Some((k.clone(), v.string_value()?.to_owned())))
                            .collect()
                    })
                    .unwrap_or_default();
                if self.read_all_attributes
                    && let Some(sent) = m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::SentTimestamp))
                {
                    attributes.insert(SENT_TIMESTAMP_ATTRIBUTE.to_owned(), sent.clone());
                }
                messages.push(ReceivedMessage {
                    message_id: id.to_owned(),
                    receipt_handle: handle.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receive_count,
                    attributes,
                });
            }
            Ok(messages)
        })
    }

    fn delete_batch<'a>(
        &'a self,
        entries: &'a [DeleteEntry],
    ) -> BoxFuture<'a, Result<Vec<DeleteFailure>, QueueError>> {
        Box::pin(async move {
            if entries.is_empty() {
                return Ok(Vec::new());
            }
            let mut request = self.client.delete_message_batch().queue_url(&self.url);
            for entry in entries {
                let built = DeleteMessageBatchRequestEntry::builder()
                    .id(&entry.id)
                    .receipt_handle(&entry.receipt_handle)
                    .build()
                    .map_err(|e| QueueError::Permanent {
                        operation: "DeleteMessageBatch",
                        message: e.to_string(),
                    })?;
                request = request.entries(built);
            }
            let output = request
                .send()
                .await
                .map_err(|e| classify("DeleteMessageBatch", e))?;
            Ok(output
                .failed()
                .iter()
                .map(|f| DeleteFailure {
                    id: f.id().to_owned(),
                    code: f.code().to_owned(),
                    message: f.message().unwrap_or_default().to_owned(),
                    sender_fault: f.sender_fault(),
                })
                .collect())
        })
    }

    fn change_visibility<'a>(
        &'a self,
        receipt_handle: &'a str,
        timeout: Duration,
    ) -> BoxFuture<'a, Result<(), QueueError>> {
        Box::pin(async move {
            self.client
                .change_message_visibility()
                .queue_url(&self.url)
                .receipt_handle(receipt_handle)
                .visibility_timeout(seconds(timeout, 43_200))
                .send()
                .await
                .map_err(|e| classify("ChangeMessageVisibility", e))?;
            Ok(())
        })
    }

    fn send<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        self.send_delayed(body, attributes, Duration::ZERO)
    }

    fn send_delayed<'a>(
        &'a self,
        body: &'a str,
        attributes: &'a BTreeMap<String, String>,
        delay: Duration,
    ) -> BoxFuture<'a, Result<String, QueueError>> {
        Box::pin(async move {
            let mut request = self
                .client
                .send_message()
                .queue_url(&self.url)
                .message_body(body);
            if !delay.is_zero() {
                request = request.delay_seconds(seconds(delay, 900));
            }
            for (name, value) in attributes {
                let value = MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .map_err(|e| QueueError::Permanent {
                        operation: "SendMessage",
                        message: e.to_string(),
                    })?;
                request = request.message_attributes(name, value);
            }
            let output = request
                .send()
                .await
                .map_err(|e| classify("SendMessage", e))?;
            Ok(output.message_id().unwrap_or_default().to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::retry::Retryable;

    /// A moto server on 127.0.0.1, killed when dropped.
    struct Moto {
        child: std::process::Child,
        url: String,
    }

    impl Drop for Moto {
        fn drop(&mut self) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }

    async fn moto() -> Moto {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = std::process::Command::new("moto_server")
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("moto_server must be installed (pip install 'moto[server]') for the SQS tests");
        // Owned by the guard at once, so every exit path kills and reaps it.
        let moto = Moto {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return moto;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        drop(moto);
        panic!("moto_server did not start on port {port}");
    }

    fn client(endpoint: &str) -> aws_sdk_sqs::Client {
        let config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .build();
        aws_sdk_sqs::Client::from_conf(config)
    }

    #[tokio::test]
    async fn the_worker_calls_work_against_a_real_sqs_peer() {
        let moto = moto().await;
        let client = client(&moto.url);
        let url = |name: &str| {
            let client = client.clone();
            let name = name.to_owned();
            async move {
                client
                    .create_queue()
                    .queue_name(name)
                    .send()
                    .await
                    .expect("create queue")
                    .queue_url()
                    .expect("queue url")
                    .to_owned()
            }
        };
        let queue = SqsQueue::new(client.clone(), url("source").await);
        let dlq = SqsQueue::new(client.clone(), url("dlq").await);

        let attributes = BTreeMap::from([
            (
                "fb-first-failure".to_owned(),
                "2026-11-28T10:00:00Z".to_owned(),
            ),
            ("fb-error-kind".to_owned(), "decode".to_owned()),
        ]);
        queue.send("{\"a\":1}", &attributes).await.expect("send");
        let got = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .expect("receive");
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].body, "{\"a\":1}");
        assert_eq!(got[0].receive_count, 1);
        assert_eq!(
            got[0]
                .attributes
                .get("fb-first-failure")
                .map(String::as_str),
            Some("2026-11-28T10:00:00Z"),
            "asked-for attributes come back; others are not requested"
        );
        assert!(!got[0].attributes.contains_key("fb-error-kind"));

        // Made visible again at once: the next receive sees it with a higher count.
        queue
            .change_visibility(&got[0].receipt_handle, Duration::ZERO)
            .await
            .expect("change visibility");
        let again = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .expect("receive again");
        assert_eq!(again.len(), 1);
        assert_eq!(again[0].receive_count, 2);

        let failures = queue
            .delete_batch(&[
                DeleteEntry {
                    id: "0".into(),
                    receipt_handle: again[0].receipt_handle.clone(),
                },
                DeleteEntry {
                    id: "1".into(),
                    receipt_handle: "not-a-handle".into(),
                },
            ])
            .await
            .expect("delete batch");
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(failures[0].id, "1");
        let empty = queue
            .receive(10, Duration::from_secs(1), Duration::from_secs(30))
            .await
            .expect("receive after delete");
        assert!(empty.is_empty());
        assert!(
            dlq.receive(10, Duration::ZERO, Duration::from_secs(30))
                .await
                .expect("dlq receive")
                .is_empty()
        );

        let missing = SqsQueue::new(client, format!("{}/123456789012/nope", moto.url));
        let err = missing
            .receive(1, Duration::ZERO, Duration::from_secs(30))
            .await
            .expect_err("no such queue");
        assert!(!err.is_transient(), "a missing queue needs a person: {err}");
    }

    #[test]
    fn durations_are_clamped_to_what_sqs_accepts() {
        assert_eq!(seconds(Duration::from_secs(20), 20), 20);
        assert_eq!(seconds(Duration::from_secs(60), 20), 20);
        assert_eq!(seconds(Duration::from_secs(u64::MAX), 43_200), 43_200);
        assert_eq!(seconds(Duration::from_millis(1500), 20), 1);
    }
}
