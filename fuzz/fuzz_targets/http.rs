#![no_main]
//! Arbitrary requests through the real router: never a 5xx, never a non-OAuth error body.

use std::sync::OnceLock;

/// Built once per process; kept (not leaked) so LeakSanitizer stays meaningful.
static APP: OnceLock<(tokio::runtime::Runtime, authplane::Application)> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (rt, app) = APP.get_or_init(|| {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let cfg = authplane_testkit::test_config(|_| {});
        let app = rt.block_on(authplane::Application::build(cfg)).unwrap();
        (rt, app)
    });
    rt.block_on(authplane_testkit::fuzz::http(app.router(), data));
});
