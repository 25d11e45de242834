//! libFuzzer entry point of the `selectors` target (`fuzz/targets.rs` says what it decodes and checks).

#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::selectors(data));
