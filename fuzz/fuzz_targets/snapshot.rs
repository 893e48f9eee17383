//! Snapshot decoder: never panics.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = cairn::format::snapshot::Snapshot::decode(data) {
        let again = cairn::format::snapshot::Snapshot::decode(&s.encode()).expect("re-decodes");
        assert_eq!(again, s);
    }
});
