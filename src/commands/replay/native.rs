//! `replay --native`: SQS moves the messages itself with a message move task
//! (`StartMessageMoveTask`); the bridge only looks up the queue ARNs and starts it.

use aws_sdk_sqs::error::DisplayErrorContext;
use aws_sdk_sqs::types::QueueAttributeName;

use super::ReplayError;

/// SQS limits `MaxNumberOfMessagesPerSecond` of a message move task to 1–500.
pub const NATIVE_MAX_PER_SECOND: i32 = 500;

/// The SQS move task a `--native` replay started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeMoveTask {
    pub source_arn: String,
    /// `None`: each message goes back to the queue it was dead-lettered from.
    pub destination_arn: Option<String>,
    /// `None` in a dry run (nothing was started).
    pub task_handle: Option<String>,
}

/// Looks up the DLQ's ARN (and the destination's, if given as a URL) and starts the move task.
pub(super) async fn start_native(
    client: &aws_sdk_sqs::Client,
    from: &str,
    destination: Option<&str>,
    max_per_second: Option<i32>,
    dry_run: bool,
) -> Result<NativeMoveTask, ReplayError> {
    let source_arn = queue_arn(client, from).await?;
    let destination_arn = match destination {
        Some(d) if d.starts_with("arn:") => Some(d.to_owned()),
        Some(url) => Some(queue_arn(client, url).await?),
        None => None,
    };
    if dry_run {
        tracing::info!(%source_arn, ?destination_arn, "dry run: no message move task started");
        return Ok(NativeMoveTask {
            source_arn,
            destination_arn,
            task_handle: None,
        });
    }
    let output = client
        .start_message_move_task()
        .source_arn(&source_arn)
        .set_destination_arn(destination_arn.clone())
        .set_max_number_of_messages_per_second(max_per_second)
        .send()
        .await
        .map_err(|e| ReplayError::MoveTask {
            source_arn: source_arn.clone(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    let task_handle = output.task_handle().map(str::to_owned);
    tracing::info!(%source_arn, ?destination_arn, ?task_handle, "SQS message move task started");
    Ok(NativeMoveTask {
        source_arn,
        destination_arn,
        task_handle,
    })
}

async fn queue_arn(client: &aws_sdk_sqs::Client, url: &str) -> Result<String, ReplayError> {
    let output = client
        .get_queue_attributes()
        .queue_url(url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(|e| ReplayError::QueueArn {
            url: url.to_owned(),
            message: DisplayErrorContext(&e).to_string(),
        })?;
    output
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| ReplayError::QueueArn {
            url: url.to_owned(),
            message: "the response has no QueueArn".into(),
        })
}
