#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authplane_testkit::fuzz::redirect_uri(data));
