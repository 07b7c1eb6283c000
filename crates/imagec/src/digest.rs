//! Content digests, validated where they are parsed.
//!
//! A [`Digest`] is always `sha256:` followed by exactly 64 lowercase hex digits: whatever a
//! registry, an archive or an API client names (`sha256:../../etc/passwd`, `md5:…`) is
//! refused here, in go-digest's words, before it can become part of a path. The store builds
//! blob and image paths from this type only.
//!
//! ```
//! use imagec::digest::{Digest, DigestError};
//! let d = Digest::of(b"hello");
//! assert_eq!(Digest::parse(d.as_str()), Ok(d.clone()));
//! assert_eq!(d.hex().len(), 64);
//! assert_eq!(Digest::parse("sha256:../../x"), Err(DigestError::InvalidLength));
//! assert_eq!(Digest::parse("sha512:00"), Err(DigestError::Unsupported));
//! ```

use std::fmt;

use sha2::Digest as _;

/// The one algorithm images are addressed by.
const SHA256: &str = "sha256";
/// Hex digits of a sha256 digest.
const SHA256_HEX_LEN: usize = 64;

/// A `sha256:<64 lowercase hex>` digest.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Digest(String);

/// Why a string is not a digest (go-digest's messages, which Docker prints).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DigestError {
    /// No `algorithm:encoded` shape, or an encoded part that is not lowercase hex.
    #[error("invalid checksum digest format")]
    InvalidFormat,
    /// A sha256 digest without exactly 64 hex digits.
    #[error("invalid checksum digest length")]
    InvalidLength,
    /// Any algorithm but sha256.
    #[error("unsupported digest algorithm")]
    Unsupported,
}

/// go-digest's algorithm grammar: `[a-z0-9]+([.+_-][a-z0-9]+)*`.
fn valid_algorithm(a: &str) -> bool {
    let b = a.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    b.windows(2).all(|w| alnum(w[0]) || alnum(w[1]))
        && b.iter()
            .all(|&x| alnum(x) || matches!(x, b'.' | b'+' | b'_' | b'-'))
}

/// go-digest's encoded grammar: `[a-zA-Z0-9=_-]+`.
fn valid_encoded(e: &str) -> bool {
    !e.is_empty()
        && e.bytes()
            .all(|x| x.is_ascii_alphanumeric() || matches!(x, b'=' | b'_' | b'-'))
}

impl Digest {
    /// Parses `sha256:<64 lowercase hex>`; anything else is refused as go-digest refuses it.
    pub fn parse(s: &str) -> Result<Digest, DigestError> {
        let Some((algorithm, encoded)) = s.split_once(':') else {
            return Err(DigestError::InvalidFormat);
        };
        if algorithm.is_empty() || encoded.is_empty() {
            return Err(DigestError::InvalidFormat);
        }
        if algorithm != SHA256 {
            if !valid_algorithm(algorithm) || !valid_encoded(encoded) {
                return Err(DigestError::InvalidFormat);
            }
            return Err(DigestError::Unsupported);
        }
        if encoded.len() != SHA256_HEX_LEN {
            return Err(DigestError::InvalidLength);
        }
        if !encoded
            .bytes()
            .all(|x| x.is_ascii_digit() || (b'a'..=b'f').contains(&x))
        {
            return Err(DigestError::InvalidFormat);
        }
        Ok(Digest(s.to_string()))
    }

    /// The sha256 digest of `data`.
    pub fn of(data: &[u8]) -> Digest {
        Digest::from_sha256(sha2::Sha256::digest(data).into())
    }

    /// The digest of a finished sha256 hash.
    pub fn from_sha256(hash: [u8; 32]) -> Digest {
        Digest(format!("{SHA256}:{}", hex::encode(hash)))
    }

    /// `sha256:<hex>`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The 64 hex digits: safe as a file name.
    pub fn hex(&self) -> &str {
        &self.0[SHA256.len() + 1..]
    }

    /// The first 12 hex digits, as Docker shows layer and image IDs.
    pub fn short(&self) -> &str {
        &self.hex()[..12]
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl std::str::FromStr for Digest {
    type Err = DigestError;
    fn from_str(s: &str) -> Result<Digest, DigestError> {
        Digest::parse(s)
    }
}

impl AsRef<str> for Digest {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for Digest {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for Digest {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for Digest {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

impl From<Digest> for String {
    fn from(d: Digest) -> String {
        d.0
    }
}

impl serde::Serialize for Digest {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Digest {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Digest, D::Error> {
        let s = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Digest::parse(&s).map_err(|e| serde::de::Error::custom(format!("digest {s:?}: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const GOOD: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn only_sha256_with_64_lowercase_hex_digits_is_a_digest() {
        let d = Digest::parse(GOOD).unwrap();
        assert_eq!(d.as_str(), GOOD);
        assert_eq!(d.hex(), &GOOD[7..]);
        assert_eq!(d.short(), "0123456789ab");
        for (bad, why) in [
            ("", DigestError::InvalidFormat),
            ("sha256", DigestError::InvalidFormat),
            ("sha256:", DigestError::InvalidFormat),
            (":abc", DigestError::InvalidFormat),
            ("sha256:../../etc/passwd", DigestError::InvalidLength),
            ("sha256:../../x", DigestError::InvalidLength),
            ("sha256:abc", DigestError::InvalidLength),
            (&format!("{GOOD}0"), DigestError::InvalidLength),
            (
                &GOOD.to_uppercase().replace("SHA256", "sha256"),
                DigestError::InvalidFormat,
            ),
            (
                &format!("sha256:{}/{}", "a".repeat(31), "b".repeat(32)),
                DigestError::InvalidFormat,
            ),
            (
                &format!("sha256:{}", "g".repeat(64)),
                DigestError::InvalidFormat,
            ),
            ("sha512:abcd", DigestError::Unsupported),
            (
                "md5:d41d8cd98f00b204e9800998ecf8427e",
                DigestError::Unsupported,
            ),
            ("SHA256:abcd", DigestError::InvalidFormat),
            ("sha256x:../..", DigestError::InvalidFormat),
            ("tarsum.v1+sha256:abc", DigestError::Unsupported),
        ] {
            assert_eq!(Digest::parse(bad), Err(why), "{bad:?}");
        }
        assert_eq!(
            DigestError::InvalidFormat.to_string(),
            "invalid checksum digest format"
        );
        assert_eq!(
            DigestError::Unsupported.to_string(),
            "unsupported digest algorithm"
        );
    }

    #[test]
    fn a_digest_in_json_is_checked_as_it_is_read() {
        let ok: Digest = serde_json::from_str(&format!("{GOOD:?}")).unwrap();
        assert_eq!(ok, GOOD);
        assert_eq!(serde_json::to_string(&ok).unwrap(), format!("{GOOD:?}"));
        let err = serde_json::from_str::<Digest>("\"sha256:../../x\"").unwrap_err();
        assert!(
            err.to_string().contains("invalid checksum digest length"),
            "{err}"
        );
    }

    #[test]
    fn the_digest_of_bytes_is_their_sha256() {
        assert_eq!(
            Digest::of(b"").as_str(),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases.max(2048)))]

        /// Any string: no panic, and what parses is exactly the safe shape.
        #[test]
        fn parsing_never_panics_and_accepts_only_the_safe_shape(s in any::<String>()) {
            if let Ok(d) = Digest::parse(&s) {
                prop_assert_eq!(d.as_str(), s.as_str());
                prop_assert!(d.hex().len() == 64);
                prop_assert!(d.hex().bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
            }
        }

        /// Strings shaped like digests, near misses included.
        #[test]
        fn digest_like_strings_parse_only_when_valid(
            alg in "(sha256|sha512|md5|SHA256|sha256\\+x|)",
            enc in "[0-9a-fA-F./]{0,70}",
        ) {
            let s = format!("{alg}:{enc}");
            let valid = alg == "sha256"
                && enc.len() == 64
                && enc.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
            prop_assert_eq!(Digest::parse(&s).is_ok(), valid, "{}", s);
        }

        /// Every hash round-trips through its text.
        #[test]
        fn hashes_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let d = Digest::of(&bytes);
            prop_assert_eq!(Digest::parse(d.as_str()), Ok(d));
        }
    }
}
