//! Chunk-list decoder (format 3): never panics, at any level it is asked
//! for; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&level, bytes)) = data.split_first() else { return };
    if let Ok(list) = cairn::format::list::decode(bytes, level) {
        assert_eq!(cairn::format::list::encode(&list), bytes);
    }
});
