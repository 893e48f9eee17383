//! Index decoder: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(ix) = cairn::format::index::decode_index(data) {
        let again = if data[0] == cairn::format::index::VERSION_UNITS {
            cairn::format::index::encode_index_3(&ix)
        } else {
            cairn::format::index::encode_index(&ix)
        };
        assert_eq!(again, data);
    }
});
