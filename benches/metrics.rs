//! The cost of metric recording per request: what `layers::metrics::track` does on every request
//! (register the histogram by name and labels, then record), against recording into a handle
//! registered once. `cargo bench --bench metrics`

use authplane::telemetry::{self, Metrics};
use criterion::{Criterion, black_box};

mod common;

fn metrics_benches(c: &mut Criterion) {
    let metrics = Metrics::new();
    let mut g = c.benchmark_group("metrics");
    // As the latency layer does it per request: status to a string, the key built, looked up in
    // the registry, then one observation.
    g.bench_function("register_and_record_per_request", |b| {
        b.iter(|| {
            let status = black_box(200u16).to_string();
            metrics
                .histogram(
                    telemetry::HTTP_DURATION,
                    &[("method", "GET"), ("route", "/auth/userinfo"), ("status", &status)],
                )
                .record(black_box(0.000_25));
        })
    });
    // The observation alone, into a handle registered once.
    let h = metrics.histogram(
        telemetry::HTTP_DURATION,
        &[("method", "GET"), ("route", "/auth/userinfo"), ("status", "200")],
    );
    g.bench_function("record_prebound_histogram", |b| {
        b.iter(|| h.record(black_box(0.000_25)))
    });
    // A counter increment through a handle (cache hits, tokens issued).
    let counter = metrics.counter(telemetry::CACHE_HITS, &[("cache", "access_tokens")]);
    g.bench_function("counter_increment", |b| b.iter(|| counter.increment(black_box(1))));
    // Registration of a counter by name and label (what a per-call lookup would cost).
    g.bench_function("register_counter", |b| {
        b.iter(|| {
            metrics.counter(
                telemetry::TOKENS_ISSUED,
                &[("grant_type", black_box("client_credentials"))],
            )
        })
    });
    g.finish();
    // Rendering /metrics after a million observations, for scale.
    let mut g = c.benchmark_group("metrics_render");
    g.sample_size(10);
    g.bench_function("render", |b| b.iter(|| metrics.render().len()));
    g.finish();
}

common::bench_main!(30, metrics_benches);
