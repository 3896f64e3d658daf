//! Optional trace export over OTLP/HTTP (`--otlp-endpoint`, e.g. `http://collector:4318`).
//! Spans are batched and sent from the exporter's own thread, so exporting never runs on a
//! request path. The request span, the cache lookups and the store calls are exported; the
//! `authplane` spans at debug level are included for this layer only, so the console log stays at
//! its own level.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Subscriber;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::{LevelFilter, Targets};
use tracing_subscriber::registry::LookupSpan;

/// Flushes and shuts the exporter down when dropped.
pub struct OtlpGuard {
    provider: Option<SdkTracerProvider>,
}

impl OtlpGuard {
    /// Sends every finished span now (tests, and before exit).
    pub fn flush(&self) {
        if let Some(p) = &self.provider {
            if let Err(e) = p.force_flush() {
                tracing::warn!(error = %e, "flushing traces failed");
            }
        }
    }
}

impl Drop for OtlpGuard {
    fn drop(&mut self) {
        if let Some(p) = self.provider.take() {
            let _ = p.shutdown();
        }
    }
}

/// `{endpoint}/v1/traces`, as OTEL_EXPORTER_OTLP_ENDPOINT is interpreted.
fn traces_url(endpoint: &str) -> String {
    let base = endpoint.trim_end_matches('/');
    if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    }
}

/// The OTLP layer for the subscriber, when an endpoint is configured. Build it outside the async
/// runtime: the exporter's blocking HTTP client may not be created inside one.
pub fn layer<S>(endpoint: Option<&str>) -> anyhow::Result<(Option<impl Layer<S> + use<S>>, OtlpGuard)>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    let Some(endpoint) = endpoint else {
        return Ok((None, OtlpGuard { provider: None }));
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(traces_url(endpoint))
        .build()?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name("authplane").build())
        .build();
    let tracer = provider.tracer("authplane");
    let filter = Targets::new()
        .with_default(LevelFilter::INFO)
        .with_target("authplane", LevelFilter::DEBUG);
    let layer = tracing_opentelemetry::layer().with_tracer(tracer).with_filter(filter);
    Ok((
        Some(layer),
        OtlpGuard {
            provider: Some(provider),
        },
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn endpoint_is_the_collector_base() {
        assert_eq!(super::traces_url("http://c:4318"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/"), "http://c:4318/v1/traces");
        assert_eq!(super::traces_url("http://c:4318/v1/traces"), "http://c:4318/v1/traces");
    }
}
