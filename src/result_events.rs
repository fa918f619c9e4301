//! Result events on the binary's side: the variables that turn them on (an EventBridge bus, an
//! SNS topic, or both), their validation, the destinations the pipeline publishes to, and the
//! lines `avscan check` prints for them. The events themselves are `avscan_actors::result_event`.

use std::sync::Arc;

use avscan_actors::ports::ResultSink;
use aws_config::SdkConfig;
use clap::Args;

use crate::aws;
use crate::config::{ConfigError, ServiceEndpoint};

/// The result-event variables, flattened into every command's configuration.
#[derive(Debug, Clone, Args)]
pub struct ResultEventsArgs {
    /// EventBridge bus (name or ARN; `default` is the account's default bus) that gets one
    /// "GuardDuty Malware Protection Object Scan Result" event per verdict.
    #[arg(long, env = "RESULT_EVENTS_BUS")]
    pub result_events_bus: Option<String>,
    /// SNS topic that gets the same event per verdict, in EventBridge's envelope.
    #[arg(long, env = "RESULT_EVENTS_TOPIC_ARN")]
    pub result_events_topic_arn: Option<String>,
    /// The events' `source`. EventBridge keeps `aws.*` (GuardDuty's `aws.guardduty`) for AWS
    /// services: a rule written for GuardDuty matches avscan's events once its `source` says
    /// this (or it matches on `detail-type` alone).
    #[arg(long, env = "RESULT_EVENTS_SOURCE", default_value = "avscan")]
    pub result_events_source: String,
    #[arg(long, env = "AWS_EVENTS_ENDPOINT_URL")]
    pub aws_events_endpoint_url: Option<String>,
    #[arg(long, env = "AWS_EVENTS_REGION")]
    pub aws_events_region: Option<String>,
    #[arg(long, env = "AWS_EVENTS_ACCESS_KEY_ID")]
    pub aws_events_access_key_id: Option<String>,
    #[arg(long, env = "AWS_EVENTS_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub aws_events_secret_access_key: Option<String>,
}

/// Where result events go; both `None`: nowhere.
#[derive(Debug, Clone, Default)]
pub struct ResultEventsSettings {
    pub bus: Option<String>,
    pub topic_arn: Option<String>,
    pub source: String,
    /// The EventBridge connection overrides (`AWS_EVENTS_*`).
    pub events: ServiceEndpoint,
}

fn set(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_owned)
}

impl ResultEventsArgs {
    pub fn settings(&self) -> Result<ResultEventsSettings, ConfigError> {
        let source = self.result_events_source.trim().to_owned();
        // EventBridge refuses these for every entry: a publish that can never succeed.
        if source.is_empty() || source.len() > 256 || source.starts_with("aws.") {
            return Err(ConfigError {
                variable: "RESULT_EVENTS_SOURCE",
                problem: format!(
                    "{source:?}: must be 1 to 256 characters and not start with `aws.` (EventBridge keeps those for AWS services)"
                ),
            });
        }
        let topic_arn = set(&self.result_events_topic_arn);
        if let Some(arn) = &topic_arn {
            if !arn.starts_with("arn:") || arn.split(':').count() != 6 {
                return Err(ConfigError {
                    variable: "RESULT_EVENTS_TOPIC_ARN",
                    problem: format!("{arn:?} is not a topic ARN (arn:aws:sns:<region>:<account>:<name>)"),
                });
            }
        }
        Ok(ResultEventsSettings {
            bus: set(&self.result_events_bus),
            topic_arn,
            source,
            events: ServiceEndpoint {
                endpoint_url: self.aws_events_endpoint_url.clone(),
                region: self.aws_events_region.clone(),
                access_key_id: self.aws_events_access_key_id.clone(),
                secret_access_key: self.aws_events_secret_access_key.clone(),
            },
        })
    }
}

impl ResultEventsSettings {
    /// The destinations the pipeline publishes to.
    pub fn sinks(&self, sdk: &SdkConfig, sns: &ServiceEndpoint) -> Vec<Arc<dyn ResultSink>> {
        let mut sinks: Vec<Arc<dyn ResultSink>> = Vec::new();
        if let Some(bus) = &self.bus {
            sinks.push(Arc::new(aws::EventBridgeResults {
                client: aws::events_client(sdk, &self.events),
                bus: bus.clone(),
                source: self.source.clone(),
            }));
        }
        if let Some(topic_arn) = &self.topic_arn {
            sinks.push(Arc::new(aws::SnsResults {
                client: aws::sns_client(sdk, sns),
                topic_arn: topic_arn.clone(),
                source: self.source.clone(),
            }));
        }
        sinks
    }

    /// `avscan check`'s lines: each destination exists and answers. `Err` is the failure.
    pub async fn check(&self, sdk: &SdkConfig, sns: &ServiceEndpoint) -> Vec<(String, Result<String, String>)> {
        let mut lines = Vec::new();
        if let Some(bus) = &self.bus {
            let found = aws::events_client(sdk, &self.events)
                .describe_event_bus()
                .name(bus)
                .send()
                .await
                .map(|bus| format!("exists ({})", bus.arn().unwrap_or_default()))
                .map_err(|err| aws_sdk_s3::error::DisplayErrorContext(err).to_string());
            lines.push((format!("event bus RESULT_EVENTS_BUS={bus}"), found));
        }
        if let Some(topic_arn) = &self.topic_arn {
            let found = aws::sns_client(sdk, sns)
                .get_topic_attributes()
                .topic_arn(topic_arn)
                .send()
                .await
                .map(|_| "exists".to_owned())
                .map_err(|err| aws_sdk_s3::error::DisplayErrorContext(err).to_string());
            lines.push((format!("topic RESULT_EVENTS_TOPIC_ARN={topic_arn}"), found));
        }
        lines
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(source: &str, topic: Option<&str>) -> ResultEventsArgs {
        ResultEventsArgs {
            result_events_bus: Some(" default ".into()),
            result_events_topic_arn: topic.map(str::to_owned),
            result_events_source: source.into(),
            aws_events_endpoint_url: None,
            aws_events_region: None,
            aws_events_access_key_id: None,
            aws_events_secret_access_key: None,
        }
    }

    #[test]
    fn a_source_eventbridge_refuses_or_a_topic_that_is_no_arn_refuse_to_start() {
        for source in ["aws.guardduty", "", &"x".repeat(257)] {
            let err = args(source, None).settings().unwrap_err();
            assert_eq!(err.variable, "RESULT_EVENTS_SOURCE");
        }
        let err = args("avscan", Some("results")).settings().unwrap_err();
        assert_eq!(err.variable, "RESULT_EVENTS_TOPIC_ARN");
        let settings = args("avscan", Some("arn:aws:sns:eu-west-1:123456789012:results"))
            .settings()
            .unwrap();
        assert_eq!(settings.bus.as_deref(), Some("default"));
    }
}
