"""AWS side of scripts/demo, against moto_server: create the queues and the routes into them,
publish the sample events, and report what ended up where. Uses boto3 (installed with moto)."""

import json
import pathlib
import sys
import uuid

import boto3

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
# Events published through EventBridge (a rule targets the queue) and through SNS (a topic the
# queue subscribes to, without raw delivery); bare findings go straight onto the queue.
EVENTBRIDGE = [
    "guardduty-eventbridge.json",
    "inspector-cve-eventbridge.json",
    "cspm-control-failed.json",
    # One CSPM control failing in two member accounts: the platform team groups these per
    # control, so both land on one ticket.
    "cspm-control-failed-org.json",
    "ocsf-detection.json",
    "ocsf-compliance.json",
    "custom-action.json",
]
SNS = ["sns-wrapped.json"]
DIRECT = ["bare-asff.json", "malformed-truncated.json"]


def clients(endpoint):
    kw = dict(
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return (boto3.client("sqs", **kw), boto3.client("events", **kw), boto3.client("sns", **kw))


def setup(endpoint):
    sqs, events, sns = clients(endpoint)
    run = uuid.uuid4().hex[:8]
    dlq_url = sqs.create_queue(QueueName=f"findings-dlq-{run}")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    queue_url = sqs.create_queue(
        QueueName=f"findings-{run}",
        Attributes={
            "VisibilityTimeout": "60",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"}),
        },
    )["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]

    rule = f"securityhub-findings-{run}"
    events.put_rule(
        Name=rule,
        EventPattern=json.dumps(
            {
                "source": ["aws.securityhub"],
                "detail-type": [
                    "Security Hub Findings - Imported",
                    "Security Hub Findings - Custom Action",
                    "Findings Imported V2",
                ],
            }
        ),
    )
    events.put_targets(Rule=rule, Targets=[{"Id": "findings-queue", "Arn": queue_arn}])

    topic_arn = sns.create_topic(Name=f"findings-topic-{run}")["TopicArn"]
    sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=queue_arn)

    published = 0
    for name in EVENTBRIDGE:
        event = json.loads((FIXTURES / name).read_text())
        out = events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps(event["detail"]),
                    "Resources": event.get("resources", []),
                }
            ]
        )
        if out.get("FailedEntryCount"):
            sys.exit(f"EventBridge refused {name}: {out}")
        published += 1
    for name in SNS:
        notification = json.loads((FIXTURES / name).read_text())
        sns.publish(TopicArn=topic_arn, Message=notification["Message"])
        published += 1
    for name in DIRECT:
        sqs.send_message(QueueUrl=queue_url, MessageBody=(FIXTURES / name).read_text())
        published += 1
    print(json.dumps({"queue_url": queue_url, "dlq_url": dlq_url, "published": published}))


def dlq_report(endpoint, dlq_url):
    sqs, _, _ = clients(endpoint)
    got = sqs.receive_message(
        QueueUrl=dlq_url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )
    for m in got.get("Messages", []):
        attrs = {k: v.get("StringValue") for k, v in m.get("MessageAttributes", {}).items()}
        print(f"  DLQ: {attrs.get('fb-error-kind')}: {attrs.get('fb-error', '')[:160]}")


if __name__ == "__main__":
    if sys.argv[1] == "setup":
        setup(sys.argv[2])
    elif sys.argv[1] == "dlq":
        dlq_report(sys.argv[2], sys.argv[3])
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
