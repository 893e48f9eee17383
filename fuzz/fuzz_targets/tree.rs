//! Tree decoder: never panics; what decodes re-encodes to the same bytes.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(nodes) = cairn::format::tree::decode(data) {
        assert_eq!(cairn::format::tree::encode(&nodes).expect("a decoded tree encodes"), data);
    }
});
