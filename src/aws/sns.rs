//! The SNS adapter: [`SnsNotifier`] implements [`Notifier`] for the pipeline's quarantiner, which
//! publishes its reports to one topic. Errors keep the topic.

use async_trait::async_trait;
use avscan_actors::ports::*;

use super::detail;

/// The SNS topic.
pub struct SnsNotifier {
    /// Publishes with the SNS overrides and timeout.
    pub client: aws_sdk_sns::Client,
    /// Where every notification goes.
    pub topic_arn: String,
}

#[async_trait]
impl Notifier for SnsNotifier {
    async fn publish(&self, notification: &Notification) -> Result<(), NotifyError> {
        let error = |detail: String| NotifyError {
            topic: self.topic_arn.clone(),
            detail,
        };
        let mut request = self
            .client
            .publish()
            .topic_arn(&self.topic_arn)
            .subject(&notification.subject)
            .message(&notification.message);
        for (name, value) in &notification.attributes {
            let attribute = aws_sdk_sns::types::MessageAttributeValue::builder()
                .data_type("String")
                .string_value(value)
                .build()
                .map_err(|err| error(err.to_string()))?;
            request = request.message_attributes(name, attribute);
        }
        request.send().await.map(|_| ()).map_err(|err| error(detail(err)))
    }
}
