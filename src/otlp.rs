//! Optional trace export over OTLP (`--otlp-endpoint`).

use tracing_subscriber::Registry;

/// Flushes the exporter when dropped.
pub struct OtlpGuard;

pub type OtlpLayer = Option<tracing_subscriber::layer::Identity>;

/// The OTLP layer for the subscriber, when an endpoint is configured.
pub fn layer(
    endpoint: Option<&str>,
) -> anyhow::Result<(
    Option<
        tracing_subscriber::filter::Filtered<
            tracing_subscriber::layer::Identity,
            tracing_subscriber::filter::LevelFilter,
            Registry,
        >,
    >,
    OtlpGuard,
)> {
    if endpoint.is_some() {
        anyhow::bail!("this build of authplane cannot export traces over OTLP yet");
    }
    Ok((None, OtlpGuard))
}
