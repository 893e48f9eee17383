//! Config decoder: never panics; a decoded config passes validation.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = cairn::format::config::Config::decode(data) {
        assert!(c.chunker.validate().is_ok());
        assert!(cairn::chunker::Chunker::new(&c.chunker).is_ok());
    }
});
