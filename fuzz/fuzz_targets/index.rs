//! Index decoder: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ix) = cairn::format::index::decode_index(data) {
        assert_eq!(cairn::format::index::encode_index(&ix), data);
    }
});
