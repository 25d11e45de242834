//! libFuzzer entry point of the `etcd` target (`fuzz/targets.rs` says what it decodes and checks).

#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::etcd(data));
