"""Creates avscan's AWS resources on the emulator (idempotent) and writes the matching .env.

Buckets, the inbound/validation/rejected queues (inbound with a dead-letter queue), the SNS
topic with an SQS subscription (so tests and people can read the notifications), and the
unprocessed bucket's ObjectCreated notification to the inbound queue.
"""
import argparse
import json

import boto3

NAMES = {
    "UNPROCESSED_BUCKET_NAME": "avscan-unprocessed",
    "QUARANTINE_BUCKET_NAME": "avscan-quarantine",
    "VIRUS_SCANNING_QUEUE_NAME": "avscan-scan",
    "VALIDATION_QUEUE_NAME": "avscan-validation",
    "REJECTED_EVENTS_QUEUE_NAME": "avscan-rejected",
}
DEAD_LETTER_QUEUE = "avscan-scan-dlq"
NOTIFICATIONS_QUEUE = "avscan-notifications"
TOPIC = "avscan-virus-notifications"
REGION = "us-east-1"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoint", required=True)
    parser.add_argument("--env-file", required=True)
    args = parser.parse_args()
    session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name=REGION)
    s3 = session.client("s3", endpoint_url=args.endpoint)
    sqs = session.client("sqs", endpoint_url=args.endpoint)
    sns = session.client("sns", endpoint_url=args.endpoint)

    for bucket in (NAMES["UNPROCESSED_BUCKET_NAME"], NAMES["QUARANTINE_BUCKET_NAME"]):
        s3.create_bucket(Bucket=bucket)

    dlq_url = sqs.create_queue(QueueName=DEAD_LETTER_QUEUE)["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    inbound_url = sqs.create_queue(
        QueueName=NAMES["VIRUS_SCANNING_QUEUE_NAME"],
        Attributes={"RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "10"})},
    )["QueueUrl"]
    inbound_arn = sqs.get_queue_attributes(QueueUrl=inbound_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for queue in (NAMES["VALIDATION_QUEUE_NAME"], NAMES["REJECTED_EVENTS_QUEUE_NAME"], NOTIFICATIONS_QUEUE):
        sqs.create_queue(QueueName=queue)

    topic_arn = sns.create_topic(Name=TOPIC)["TopicArn"]
    notifications_url = sqs.get_queue_url(QueueName=NOTIFICATIONS_QUEUE)["QueueUrl"]
    notifications_arn = sqs.get_queue_attributes(QueueUrl=notifications_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    existing = sns.list_subscriptions_by_topic(TopicArn=topic_arn)["Subscriptions"]
    if not any(sub["Endpoint"] == notifications_arn for sub in existing):
        sns.subscribe(TopicArn=topic_arn, Protocol="sqs", Endpoint=notifications_arn)

    current = s3.get_bucket_notification_configuration(Bucket=NAMES["UNPROCESSED_BUCKET_NAME"])
    if not any(c.get("QueueArn") == inbound_arn for c in current.get("QueueConfigurations", [])):
        s3.put_bucket_notification_configuration(
            Bucket=NAMES["UNPROCESSED_BUCKET_NAME"],
            NotificationConfiguration={"QueueConfigurations": [{"QueueArn": inbound_arn, "Events": ["s3:ObjectCreated:*"]}]},
        )

    env = dict(NAMES)
    env["VIRUS_NOTIFICATION_TOPIC_ARN"] = topic_arn
    for service in ("S3", "SQS", "SNS"):
        env[f"AWS_{service}_ENDPOINT_URL"] = args.endpoint
        env[f"AWS_{service}_REGION"] = REGION
        env[f"AWS_{service}_ACCESS_KEY_ID"] = "test"
        env[f"AWS_{service}_SECRET_ACCESS_KEY"] = "test"
    env["CLAMD_ADDRESS"] = "tcp://127.0.0.1:3310"
    # compose/clamav/clamd.conf's MaxFileSize: archive members up to this are scanned.
    env["CLAMD_MAX_FILE_SIZE"] = "400"
    # ... and its MaxScanSize: the archive guard extracts up to this much of one object.
    env["CLAMD_MAX_SCAN_SIZE"] = "1600"
    env["VIRUS_SCANNER_WORKER_MSG_WAIT_TIME"] = "2"
    with open(args.env_file, "w") as out:
        out.write("# written by compose/resources.py for the local stack\n")
        for name, value in env.items():
            out.write(f"{name}={value}\n")


if __name__ == "__main__":
    main()
