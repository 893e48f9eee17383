//! Pack header, trailer and whole-pack parsing: never panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(entries) = cairn::format::pack::decode_header(data) {
        assert_eq!(cairn::format::pack::encode_header(&entries), data);
    }
    if let Ok(entries) = cairn::format::pack::decode_header_2(data) {
        assert_eq!(cairn::format::pack::encode_header_2(&entries), data);
    }
    let _ = cairn::format::pack::decode_group(data);
    let _ = cairn::format::pack::decode_trailer_any(data, data.len() as u64);
    let id = cairn::id::PackId([0; 32]);
    let _ = cairn::pack::header_from_bytes(&[7; 32], &id, data);
});
