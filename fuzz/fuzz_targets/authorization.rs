#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| authplane::fuzz_harness::authorization(data));
