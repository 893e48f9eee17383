//! The WAL archive's decoders (format-spec/13-wal.md): a WAL object, a
//! segment header with its checks, a timeline history file and a WAL file
//! name never panic, and what decodes encodes back to the same.
#![no_main]
use libfuzzer_sys::fuzz_target;

use cairn::format::wal::WalObject;
use cairn::pg::wal::{parse_history, SegmentHeader, WalFile};

fuzz_target!(|data: &[u8]| {
    if let Ok(o) = WalObject::decode(data) {
        assert_eq!(WalObject::decode(&o.encode()).expect("re-decodes"), o);
    }
    if let Ok(h) = SegmentHeader::decode(data) {
        let f = WalFile::Segment { tli: 1, log: 0, seg: 3 };
        let _ = h.check(&f, data.len() as u64);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = parse_history(text);
        if let Some(f) = WalFile::parse(text) {
            assert_eq!(f.to_string(), text);
        }
    }
});
