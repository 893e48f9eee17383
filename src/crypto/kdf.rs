//! Password stretching (argon2id) and wrapping of the master key.

use argon2::{Algorithm, Argon2, Params, Version};
use zeroize::Zeroizing;

use super::aead::{decrypt_in_place, encrypt_in_place, random_nonce, TAG_LEN};
use super::{MasterKey, MASTER_KEY_LEN};
use crate::error::{Error, ErrorKind, Result};
use crate::format::keyfile::{KdfParams, KeyFile};

/// Default argon2id cost: 32 MiB, 3 passes, 1 lane.
pub const DEFAULT_KDF: KdfParams = KdfParams { m_cost_kib: 32 * 1024, t_cost: 3, p_cost: 1 };

/// Cheap parameters for tests, selected with `CAIRN_INSECURE_TEST_KDF=1` in
/// builds with the `test-hooks` feature.
pub const TEST_KDF: KdfParams = KdfParams { m_cost_kib: 64, t_cost: 1, p_cost: 1 };

/// Parameters for new key files: [`DEFAULT_KDF`], unless the test override
/// is set in a build with the `test-hooks` feature (a release build has no
/// such override).
pub fn params_for_new_keys() -> KdfParams {
    #[cfg(any(test, feature = "test-hooks"))]
    if std::env::var_os("CAIRN_INSECURE_TEST_KDF").is_some_and(|v| v == "1") {
        return TEST_KDF;
    }
    DEFAULT_KDF
}

/// argon2id(password, salt) -> 32-byte key-encryption key.
pub fn derive_kek(password: &[u8], salt: &[u8; 32], p: &KdfParams) -> Result<Zeroizing<[u8; 32]>> {
    let params = Params::new(p.m_cost_kib, p.t_cost, p.p_cost, Some(32))
        .map_err(|e| Error::corrupt(format!("key file has invalid argon2 parameters: {e}")))?;
    let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(password, salt, &mut out[..])
        .map_err(|e| Error::corrupt(format!("argon2id failed: {e}")))?;
    Ok(out)
}

/// Builds a key file wrapping `master` under `password`, with explicit salt
/// and nonce (deterministic: used by the test vectors).
pub fn wrap_with(
    master: &MasterKey,
    password: &[u8],
    params: KdfParams,
    salt: [u8; 32],
    nonce: [u8; 24],
    created: i64,
    label: String,
) -> Result<KeyFile> {
    let kek = derive_kek(password, &salt, &params)?;
    let mut kf = KeyFile { params, salt, created, label, nonce, wrapped: [0u8; MASTER_KEY_LEN + TAG_LEN] };
    let ad = kf.associated_data();
    let mut buf = Zeroizing::new(master.to_bytes());
    let tag = encrypt_in_place(&kek, &nonce, &ad, &mut buf[..]);
    kf.wrapped[..MASTER_KEY_LEN].copy_from_slice(&buf[..]);
    kf.wrapped[MASTER_KEY_LEN..].copy_from_slice(&tag);
    Ok(kf)
}

/// Builds a key file with a random salt and nonce.
pub fn wrap(master: &MasterKey, password: &[u8], params: KdfParams, label: String) -> Result<KeyFile> {
    let mut salt = [0u8; 32];
    rand::Rng::fill(&mut rand::thread_rng(), &mut salt[..]);
    wrap_with(master, password, params, salt, random_nonce(), chrono::Utc::now().timestamp(), label)
}

/// Opens a key file with `password`. A wrong password is
/// [`ErrorKind::WrongPassword`].
pub fn unwrap(kf: &KeyFile, password: &[u8]) -> Result<MasterKey> {
    let kek = derive_kek(password, &kf.salt, &kf.params)?;
    let mut buf = Zeroizing::new([0u8; MASTER_KEY_LEN]);
    buf.copy_from_slice(&kf.wrapped[..MASTER_KEY_LEN]);
    let mut tag = [0u8; TAG_LEN];
    tag.copy_from_slice(&kf.wrapped[MASTER_KEY_LEN..]);
    decrypt_in_place(&kek, &kf.nonce, &kf.associated_data(), &mut buf[..], &tag)
        .map_err(|_| Error::new(ErrorKind::WrongPassword, "wrong password or no key found"))?;
    Ok(MasterKey::from_bytes(&buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap_and_wrong_password() {
        let mk = MasterKey::generate();
        let kf = wrap(&mk, b"secret", TEST_KDF, "me@host".into()).unwrap();
        let bytes = kf.encode();
        let back = KeyFile::decode(&bytes).unwrap();
        let mk2 = unwrap(&back, b"secret").unwrap();
        assert_eq!(mk.to_bytes(), mk2.to_bytes());
        let err = unwrap(&back, b"wrong").unwrap_err();
        assert_eq!(err.kind(), ErrorKind::WrongPassword);
    }

    #[test]
    fn tampered_label_is_rejected() {
        let mk = MasterKey::generate();
        let mut kf = wrap(&mk, b"pw", TEST_KDF, "a".into()).unwrap();
        kf.label = "b".into();
        assert!(unwrap(&kf, b"pw").is_err());
    }
}
