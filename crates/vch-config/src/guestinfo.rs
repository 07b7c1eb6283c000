//! The appliance's configuration in its VM's guestinfo, on vSphere: the [`ApplianceConfig`]
//! document, public files (certificates) in clear, and secrets (the vSphere password, the TLS
//! server key) sealed with ChaCha20-Poly1305.
//!
//! The key is not in the VM's configuration: it is the first 32 bytes of a small image
//! ([`key_image`]) that vic-machine uploads to the VCH's datastore directory and attaches as
//! the appliance VM's CD-ROM, which the guest reads and reading `config.extraConfig` through
//! the vSphere API does not reveal. Each sealed value names its key in its associated data, so
//! one cannot be swapped for another.
//!
//! Values are base64url without padding: vSphere keeps any text, but some consumers (vcsim's
//! guest support among them) pass guestinfo through a shell.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

use crate::ApplianceConfig;

/// The document ([`ApplianceConfig`] as JSON).
pub const CONFIG: &str = "guestinfo.vic.config";
/// The vSphere password (sealed).
pub const PASSWORD: &str = "guestinfo.vic.secret.password";
/// The Docker API's server certificate and the client CAs (clear), its key (sealed).
pub const TLS_CERT: &str = "guestinfo.vic.tls.cert";
pub const TLS_CLIENT_CAS: &str = "guestinfo.vic.tls.client_cas";
pub const TLS_KEY: &str = "guestinfo.vic.secret.tls_key";
/// The CAs the appliance trusts registries by (`--registry-ca`; clear).
pub const REGISTRY_CA: &str = "guestinfo.vic.registry_ca";
/// What the document's `ops_password_hash` is sealed under on vSphere: it travels with the
/// document (configure's previous one, upgrade's), sealed, and the appliance opens it.
pub const OPS_PASSWORD_HASH: &str = "guestinfo.vic.secret.ops_password_hash";

/// The size of the key image: one CD-ROM sector.
pub const KEY_IMAGE_LEN: usize = 2048;
const MAGIC: &[u8; 16] = b"vic-guestinfo-k1";

/// A sealing key.
pub struct Key([u8; 32]);

#[derive(Debug, thiserror::Error)]
pub enum GuestinfoError {
    #[error("{0} is not base64url")]
    Encoding(String),
    #[error("{0} does not open with the VM's key (altered, or sealed for another VM)")]
    Sealed(String),
    #[error("the key image is not vic's (no magic, or too short)")]
    KeyImage,
    #[error("{key}: {message}")]
    Config { key: String, message: String },
}

impl Key {
    pub fn random() -> Key {
        Key(rand_bytes())
    }

    /// The image the VM's CD-ROM holds: magic, key, zeros.
    pub fn key_image(&self) -> Vec<u8> {
        let mut img = vec![0u8; KEY_IMAGE_LEN];
        img[..16].copy_from_slice(MAGIC);
        img[16..48].copy_from_slice(&self.0);
        img
    }

    /// The key from the CD-ROM's first bytes.
    pub fn from_image(img: &[u8]) -> Result<Key, GuestinfoError> {
        if img.len() < 48 || &img[..16] != MAGIC {
            return Err(GuestinfoError::KeyImage);
        }
        let mut k = [0u8; 32];
        k.copy_from_slice(&img[16..48]);
        Ok(Key(k))
    }

    fn aead(&self) -> LessSafeKey {
        LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, &self.0).expect("a 32-byte key"))
    }

    /// `plaintext` sealed for guestinfo key `name`: base64url(nonce ‖ ciphertext ‖ tag).
    pub fn seal(&self, name: &str, plaintext: &[u8]) -> String {
        let nonce_bytes: [u8; NONCE_LEN] = rand_bytes();
        let mut buf = plaintext.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce_bytes),
                Aad::from(name.as_bytes()),
                &mut buf,
            )
            .expect("sealing in memory");
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&buf);
        B64.encode(out)
    }

    /// What [`Key::seal`] sealed for `name`.
    pub fn open(&self, name: &str, sealed: &str) -> Result<Vec<u8>, GuestinfoError> {
        let raw = B64
            .decode(sealed)
            .map_err(|_| GuestinfoError::Encoding(name.to_string()))?;
        if raw.len() < NONCE_LEN {
            return Err(GuestinfoError::Sealed(name.to_string()));
        }
        let (nonce, body) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce)
            .map_err(|_| GuestinfoError::Sealed(name.to_string()))?;
        let mut body = body.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::from(name.as_bytes()), &mut body)
            .map_err(|_| GuestinfoError::Sealed(name.to_string()))?;
        Ok(plain.to_vec())
    }
}

fn rand_bytes<const N: usize>() -> [u8; N] {
    use ring::rand::SecureRandom;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .expect("the system's random source");
    b
}

/// A public value for guestinfo.
pub fn encode(bytes: &[u8]) -> String {
    B64.encode(bytes)
}

/// A public value from guestinfo.
pub fn decode(name: &str, value: &str) -> Result<Vec<u8>, GuestinfoError> {
    B64.decode(value)
        .map_err(|_| GuestinfoError::Encoding(name.to_string()))
}

/// The document for [`CONFIG`].
pub fn encode_config(config: &ApplianceConfig) -> String {
    encode(&serde_json::to_vec(config).expect("the document serializes"))
}

/// The document from [`CONFIG`], checked as [`crate::load`] checks a file.
pub fn decode_config(value: &str) -> Result<ApplianceConfig, GuestinfoError> {
    let raw = decode(CONFIG, value)?;
    crate::load(&raw).map_err(|e| GuestinfoError::Config {
        key: CONFIG.into(),
        message: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_with_its_key_and_name_only() {
        let key = Key::random();
        let sealed = key.seal(PASSWORD, b"s3cret&<pw>");
        assert!(!sealed.contains("s3cret"));
        assert!(sealed
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
        assert_eq!(key.open(PASSWORD, &sealed).unwrap(), b"s3cret&<pw>");
        // Another key, another name, a changed byte: refused.
        assert!(Key::random().open(PASSWORD, &sealed).is_err());
        assert!(key.open(TLS_KEY, &sealed).is_err());
        let mut raw = B64.decode(&sealed).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert!(key.open(PASSWORD, &B64.encode(raw)).is_err());
        assert!(key.open(PASSWORD, "AAAA").is_err());
        assert!(key.open(PASSWORD, "not base64!").is_err());
        // Two seals of one value differ (a fresh nonce each).
        assert_ne!(key.seal(PASSWORD, b"x"), key.seal(PASSWORD, b"x"));
    }

    #[test]
    fn the_key_travels_in_its_image_and_nothing_else_is_taken_for_one() {
        let key = Key::random();
        let img = key.key_image();
        assert_eq!(img.len(), KEY_IMAGE_LEN);
        let back = Key::from_image(&img).unwrap();
        let sealed = key.seal(TLS_KEY, b"pem");
        assert_eq!(back.open(TLS_KEY, &sealed).unwrap(), b"pem");
        assert!(Key::from_image(&[0u8; 2048]).is_err());
        assert!(Key::from_image(&img[..40]).is_err());
    }
}
