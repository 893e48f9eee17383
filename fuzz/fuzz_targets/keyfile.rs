//! Key-file decoder: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(kf) = cairn::format::keyfile::KeyFile::decode(data) {
        assert_eq!(kf.encode(), data);
    }
});
