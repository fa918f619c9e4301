//! Result-event destinations on the emulator: an EventBridge bus whose rule (GuardDuty's pattern
//! with avscan's source) sends the events to a queue, and an SNS topic a queue subscribes to
//! with raw delivery, so tests read back what avscan published.

use std::collections::HashMap;

use serde_json::json;

use super::environment::{endpoint, queue_arn, sdk, TestEnv, REGION};

pub use avscan_actors::result_event::DETAIL_TYPE;

/// One test's result-event destinations and the queues that receive what reaches them.
pub struct ResultDestinations {
    /// The bus' name.
    pub bus: String,
    /// The queue the bus' rule sends matching events to.
    pub bus_queue_url: String,
    /// The topic's ARN.
    pub topic_arn: String,
    /// The queue subscribed to the topic (raw delivery).
    pub topic_queue_url: String,
}

impl ResultDestinations {
    /// Creates a bus, its rule and target queue, a topic and its subscribed queue, named after
    /// `env`'s resources.
    pub async fn create(env: &TestEnv) -> ResultDestinations {
        let prefix = env.unprocessed.trim_end_matches("-unprocessed").to_owned();
        let events = aws_sdk_eventbridge::Client::new(&sdk().await);
        let bus = format!("{prefix}-bus");
        events.create_event_bus().name(&bus).send().await.unwrap();
        let bus_queue_url = create_queue(env, &format!("{prefix}-events")).await;
        let rule = format!("{prefix}-results");
        let pattern = json!({ "source": ["avscan"], "detail-type": [DETAIL_TYPE] });
        events
            .put_rule()
            .name(&rule)
            .event_bus_name(&bus)
            .event_pattern(pattern.to_string())
            .send()
            .await
            .unwrap();
        let target = aws_sdk_eventbridge::types::Target::builder()
            .id("queue")
            .arn(queue_arn(&env.sqs, &bus_queue_url).await)
            .build()
            .unwrap();
        events
            .put_targets()
            .rule(&rule)
            .event_bus_name(&bus)
            .targets(target)
            .send()
            .await
            .unwrap();
        let topic = env
            .sns
            .create_topic()
            .name(format!("{prefix}-results"))
            .send()
            .await
            .unwrap();
        let topic_arn = topic.topic_arn.unwrap();
        let topic_queue_url = create_queue(env, &format!("{prefix}-sns-results")).await;
        env.sns
            .subscribe()
            .topic_arn(&topic_arn)
            .protocol("sqs")
            .endpoint(queue_arn(&env.sqs, &topic_queue_url).await)
            .attributes("RawMessageDelivery", "true")
            .send()
            .await
            .unwrap();
        ResultDestinations {
            bus,
            bus_queue_url,
            topic_arn,
            topic_queue_url,
        }
    }

    /// Points `variables` at both destinations, EventBridge through `events_endpoint`.
    pub fn configure(&self, variables: &mut HashMap<String, String>, events_endpoint: &str) {
        variables.insert("RESULT_EVENTS_BUS".into(), self.bus.clone());
        variables.insert("RESULT_EVENTS_TOPIC_ARN".into(), self.topic_arn.clone());
        for (name, value) in [
            ("AWS_EVENTS_ENDPOINT_URL", events_endpoint.to_owned()),
            ("AWS_EVENTS_REGION", REGION.to_owned()),
            ("AWS_EVENTS_ACCESS_KEY_ID", "test".into()),
            ("AWS_EVENTS_SECRET_ACCESS_KEY", "test".into()),
        ] {
            variables.insert(name.into(), value);
        }
    }

    /// Points `variables` at both destinations on the emulator.
    pub fn configure_direct(&self, variables: &mut HashMap<String, String>) {
        self.configure(variables, &endpoint());
    }
}

async fn create_queue(env: &TestEnv, name: &str) -> String {
    let output = env.sqs.create_queue().queue_name(name).send().await.unwrap();
    output.queue_url.unwrap()
}
