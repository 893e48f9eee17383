//! Key files (`keys/<id>`): argon2id parameters, salt and the wrapped
//! master key. Layout in format-spec/02-keys.md.

use super::wire::{Reader, Writer};
use crate::crypto::aead::{NONCE_LEN, TAG_LEN};
use crate::crypto::MASTER_KEY_LEN;
use crate::error::{Error, Result};

pub const MAGIC: &[u8; 8] = b"CAIRNKEY";
pub const VERSION: u8 = 1;
/// KDF code for argon2id version 0x13.
pub const KDF_ARGON2ID: u8 = 1;

/// argon2id cost parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct KdfParams {
    pub m_cost_kib: u32,
    pub t_cost: u32,
    pub p_cost: u32,
}

/// A decoded key file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFile {
    pub params: KdfParams,
    pub salt: [u8; 32],
    /// Unix seconds at creation.
    pub created: i64,
    /// Free text, `user@host` by default.
    pub label: String,
    pub nonce: [u8; NONCE_LEN],
    /// Encrypted master key followed by its Poly1305 tag.
    pub wrapped: [u8; MASTER_KEY_LEN + TAG_LEN],
}

impl KeyFile {
    /// Everything before the nonce: the associated data of the wrapping, so
    /// the parameters and label cannot be altered.
    pub fn associated_data(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.label.len());
        out.put(MAGIC);
        out.put_u8(VERSION);
        out.put_u8(KDF_ARGON2ID);
        out.put_u32(self.params.m_cost_kib);
        out.put_u32(self.params.t_cost);
        out.put_u32(self.params.p_cost);
        out.put(&self.salt);
        out.put_i64(self.created);
        out.put_u16(self.label.len() as u16);
        out.put(self.label.as_bytes());
        out
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = self.associated_data();
        out.put(&self.nonce);
        out.put(&self.wrapped);
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        let mut r = Reader::new(bytes, "key file");
        if r.bytes(8)? != MAGIC {
            return Err(Error::corrupt("key file: bad magic"));
        }
        let version = r.u8()?;
        if version != VERSION {
            return Err(Error::corrupt(format!("key file: unsupported version {version}")));
        }
        let kdf = r.u8()?;
        if kdf != KDF_ARGON2ID {
            return Err(Error::corrupt(format!("key file: unknown kdf {kdf}")));
        }
        let params = KdfParams { m_cost_kib: r.u32()?, t_cost: r.u32()?, p_cost: r.u32()? };
        // Refuse parameters that would exhaust memory or time when opened.
        if params.m_cost_kib > 4 * 1024 * 1024 || params.t_cost > 64 || params.p_cost > 64 {
            return Err(Error::corrupt("key file: argon2 parameters out of range"));
        }
        // What argon2 itself requires: without it no password could open
        // the file, so it is damaged (not a wrong password).
        if params.t_cost < 1 || params.p_cost < 1 || params.m_cost_kib < 8 * params.p_cost {
            return Err(Error::corrupt(format!(
                "key file: invalid argon2 parameters (m_cost_kib {}, t_cost {}, p_cost {}; \
                 argon2 needs t_cost >= 1, p_cost >= 1 and m_cost_kib >= 8 * p_cost)",
                params.m_cost_kib, params.t_cost, params.p_cost
            )));
        }
        let salt = r.array()?;
        let created = r.i64()?;
        let len = r.u16()? as usize;
        let label =
            String::from_utf8(r.bytes(len)?.to_vec()).map_err(|_| Error::corrupt("key file: label is not UTF-8"))?;
        let nonce = r.array()?;
        let wrapped = r.array()?;
        r.finish()?;
        Ok(Self { params, salt, created, label, nonce, wrapped })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trip(m in 32u32..100_000, t in 1u32..10, p in 1u32..4, label in ".{0,40}",
                      salt in proptest::array::uniform32(any::<u8>()), created in any::<i64>()) {
            let kf = KeyFile { params: KdfParams { m_cost_kib: m, t_cost: t, p_cost: p }, salt,
                created, label, nonce: [7; 24], wrapped: [9; 80] };
            prop_assert_eq!(KeyFile::decode(&kf.encode()).unwrap(), kf);
        }

        #[test]
        fn decode_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = KeyFile::decode(&bytes);
        }
    }

    /// Parameters argon2 refuses make the key file damaged when decoded.
    #[test]
    fn invalid_argon2_parameters_are_damage() {
        let kf = |m, t, p| KeyFile {
            params: KdfParams { m_cost_kib: m, t_cost: t, p_cost: p },
            salt: [1; 32],
            created: 0,
            label: "l".into(),
            nonce: [7; 24],
            wrapped: [9; 80],
        };
        assert!(KeyFile::decode(&kf(64, 1, 1).encode()).is_ok());
        assert!(KeyFile::decode(&kf(8, 1, 1).encode()).is_ok());
        for (m, t, p) in [(64, 0, 1), (64, 1, 0), (7, 1, 1), (15, 1, 2), (0, 0, 0)] {
            let e = KeyFile::decode(&kf(m, t, p).encode()).unwrap_err();
            assert_eq!(e.kind(), crate::error::ErrorKind::Corrupt, "{m} {t} {p}: {e}");
            assert!(e.to_string().contains("invalid argon2 parameters"), "{e}");
        }
    }
}
