//! Opening a sealed object: never panics, and without the key nothing
//! opens. The first byte picks the object type.
#![no_main]
use cairn::crypto::aead::ObjectType;
use libfuzzer_sys::fuzz_target;

const TYPES: [ObjectType; 7] = [
    ObjectType::DataBlob,
    ObjectType::TreeBlob,
    ObjectType::PackHeader,
    ObjectType::Index,
    ObjectType::Snapshot,
    ObjectType::Config,
    ObjectType::Lock,
];

fuzz_target!(|data: &[u8]| {
    let Some((&t, rest)) = data.split_first() else { return };
    let ty = TYPES[t as usize % TYPES.len()];
    assert!(cairn::seal::open(&[9; 32], ty, rest, 1 << 20).is_err());
});
