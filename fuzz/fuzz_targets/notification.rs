#![no_main]
//! See fuzz/checks.rs, `notification`.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::notification(data));
