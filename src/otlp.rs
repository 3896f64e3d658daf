//! Optional trace export over OTLP (`--otlp-endpoint`).

use tracing_subscriber::{Layer, Registry};

/// Flushes the exporter when dropped.
pub struct OtlpGuard;

pub type BoxedLayer = Box<dyn Layer<Registry> + Send + Sync>;

/// The OTLP layer for the subscriber, when an endpoint is configured.
pub fn layer(endpoint: Option<&str>) -> anyhow::Result<(Option<BoxedLayer>, OtlpGuard)> {
    if endpoint.is_some() {
        anyhow::bail!("this build of authplane cannot export traces over OTLP yet");
    }
    Ok((None, OtlpGuard))
}
