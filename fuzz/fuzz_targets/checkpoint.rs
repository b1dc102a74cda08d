#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| sturdy_fuzz::checkpoint::run(data));
