#![no_main]
//! See fuzz/checks.rs, `differential`.

#[path = "../checks.rs"]
mod checks;

libfuzzer_sys::fuzz_target!(|data: &[u8]| checks::differential(data));
