//! The least-privilege IAM policies in `deploy/` checked against the calls a run really made
//! (recorded by `faults::HttpFaultProxy`): every call is allowed, and nothing is a wildcard.

use serde_json::Value;

use super::{ResultDestinations, TestEnv};

/// The policy at `path` (from the repository's root), after checking it grants nothing broad:
/// no wildcard action or resource anywhere.
pub fn policy(path: &str) -> Value {
    let text = std::fs::read_to_string(format!("{}/{path}", env!("CARGO_MANIFEST_DIR"))).unwrap();
    let policy: Value = serde_json::from_str(&text).unwrap();
    for statement in policy["Statement"].as_array().unwrap() {
        let text = statement.to_string();
        assert!(!text.contains("\"*\""), "wildcard in {path}: {text}");
        assert!(!text.contains(":*\""), "service-wide action in {path}: {text}");
    }
    policy
}

/// The placeholder a resource name of `env` (and of its result destinations) stands for in the
/// policies.
pub fn placeholder(env: &TestEnv, results: Option<&ResultDestinations>, resource: &str) -> &'static str {
    match resource {
        r if results.is_some_and(|results| r == results.bus) => "RESULT_EVENTS_BUS",
        r if results.is_some_and(|results| results.topic_arn.ends_with(&format!(":{r}"))) => "RESULT_EVENTS_TOPIC",
        r if r == env.unprocessed => "UNPROCESSED_BUCKET",
        r if r == env.quarantine => "QUARANTINE_BUCKET",
        r if r == env.inbound_name => "VIRUS_SCANNING_QUEUE",
        r if r == env.validation_name => "VALIDATION_QUEUE",
        r if r == env.rejected_name => "REJECTED_EVENTS_QUEUE",
        r if env.topic_arn.ends_with(&format!(":{r}")) => "VIRUS_NOTIFICATION_TOPIC",
        other => panic!("an unknown resource was called: {other:?}"),
    }
}

/// The IAM actions an API operation needs on its resource.
pub fn actions_for(operation: &str) -> &'static [&'static str] {
    match operation {
        "GetQueueUrl" => &["sqs:GetQueueUrl"],
        "ReceiveMessage" => &["sqs:ReceiveMessage"],
        "DeleteMessage" | "DeleteMessageBatch" => &["sqs:DeleteMessage"],
        "ChangeMessageVisibility" | "ChangeMessageVisibilityBatch" => &["sqs:ChangeMessageVisibility"],
        "SendMessage" | "SendMessageBatch" => &["sqs:SendMessage"],
        "GetObject" | "HeadObject" => &["s3:GetObject"],
        "CopyObject:source" | "UploadPartCopy:source" => &["s3:GetObject", "s3:GetObjectTagging"],
        "CopyObject" | "PutObject" | "CreateMultipartUpload" | "UploadPartCopy" | "CompleteMultipartUpload" => {
            &["s3:PutObject"]
        }
        "DeleteObject" => &["s3:DeleteObject"],
        "GetObjectTagging" => &["s3:GetObjectTagging"],
        "PutObjectTagging" => &["s3:PutObjectTagging"],
        "Publish" | "PublishBatch" => &["sns:Publish"],
        "PutEvents" => &["events:PutEvents"],
        // `avscan check`
        "GetQueueAttributes" => &["sqs:GetQueueAttributes"],
        "HeadBucket" | "ListObjects" => &["s3:ListBucket"],
        "ListObjectVersions" => &["s3:ListBucketVersions"],
        "GetBucketVersioning" => &["s3:GetBucketVersioning"],
        "GetBucketLifecycleConfiguration" => &["s3:GetLifecycleConfiguration"],
        "GetTopicAttributes" => &["sns:GetTopicAttributes"],
        "DescribeEventBus" => &["events:DescribeEventBus"],
        other => panic!("no IAM mapping for {other}: add it here and to the policy in deploy/"),
    }
}

fn allows(policy: &Value, action: &str, resource_placeholder: &str) -> bool {
    policy["Statement"].as_array().unwrap().iter().any(|statement| {
        let listed = |field: &str| -> Vec<String> {
            match &statement[field] {
                Value::String(one) => vec![one.clone()],
                Value::Array(many) => many.iter().filter_map(|v| v.as_str().map(str::to_owned)).collect(),
                _ => Vec::new(),
            }
        };
        statement["Effect"] == "Allow"
            && listed("Action").iter().any(|a| a == action)
            && listed("Resource").iter().any(|r| {
                r.ends_with(&format!(":{resource_placeholder}"))
                    || r.ends_with(&format!(":event-bus/{resource_placeholder}"))
                    || r.ends_with(&format!(":::{resource_placeholder}/*"))
                    || r.ends_with(&format!(":::{resource_placeholder}"))
            })
    })
}

/// What `policy` lacks for the recorded `(operation, resource)` calls, one line each.
pub fn missing(
    policy: &Value,
    calls: &std::collections::BTreeSet<(String, String)>,
    placeholder: impl Fn(&str) -> &'static str,
) -> Vec<String> {
    let mut missing = Vec::new();
    for (operation, resource) in calls {
        let resource = placeholder(resource);
        for action in actions_for(operation) {
            if !allows(policy, action, resource) {
                missing.push(format!("{action} on {resource} (for {operation})"));
            }
        }
    }
    missing
}
