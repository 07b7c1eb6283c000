//! Registry credentials and the two challenges a registry can answer with: `Basic` (htpasswd)
//! and `Bearer` (the token flow: ask the realm for a token for `repository:NAME:pull`, then
//! send it). Credentials arrive with each request (`X-Registry-Auth`, `docker login`'s body)
//! and live only as long as that request: the VCH never stores or logs them, so `docker
//! logout` on the client takes effect at once, as with dockerd.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use serde::Deserialize;
use sha2::{Digest, Sha256};

/// What a client sends to prove who it is: `{"username","password","serveraddress",
/// "identitytoken","registrytoken"}` (the `X-Registry-Auth` JSON and `POST /auth` body).
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Credentials {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub password: String,
    #[serde(default, rename = "serveraddress")]
    pub server_address: String,
    /// An OAuth2 refresh token a token service handed out at login.
    #[serde(default, rename = "identitytoken")]
    pub identity_token: String,
    /// A bearer token to send as is.
    #[serde(default, rename = "registrytoken")]
    pub registry_token: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print secrets, even in debug logs.
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("server_address", &self.server_address)
            .field(
                "password",
                &if self.password.is_empty() {
                    ""
                } else {
                    "<redacted>"
                },
            )
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Decodes an `X-Registry-Auth` header: base64 (URL-safe, as the CLI sends it, or
    /// standard) of the JSON above. Empty, `{}` or unreadable values mean "no credentials".
    pub fn from_header(value: &str) -> Option<Credentials> {
        let value = value.trim();
        if value.is_empty() {
            return None;
        }
        let engines = [
            base64::engine::general_purpose::URL_SAFE,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
            base64::engine::general_purpose::STANDARD,
            base64::engine::general_purpose::STANDARD_NO_PAD,
        ];
        let raw = engines.iter().find_map(|e| e.decode(value).ok())?;
        let c: Credentials = serde_json::from_slice(&raw).ok()?;
        (!c.is_empty()).then_some(c)
    }

    /// Whether nothing usable is set.
    pub fn is_empty(&self) -> bool {
        self.username.is_empty()
            && self.password.is_empty()
            && self.identity_token.is_empty()
            && self.registry_token.is_empty()
    }

    fn basic(&self) -> String {
        let pair = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(pair)
        )
    }

    /// A digest of the secret parts, so cached tokens are never shared between identities.
    fn fingerprint(&self) -> String {
        let mut h = Sha256::new();
        for part in [
            &self.username,
            &self.password,
            &self.identity_token,
            &self.registry_token,
        ] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        hex::encode(&h.finalize()[..16])
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
    },
}

impl Challenge {
    /// Parses `Basic realm="x"` or `Bearer realm="…",service="…",scope="…"`.
    pub(crate) fn parse(header: &str) -> Option<Challenge> {
        let header = header.trim();
        let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
        let params = parse_params(rest);
        match scheme.to_ascii_lowercase().as_str() {
            "basic" => Some(Challenge::Basic),
            "bearer" => Some(Challenge::Bearer {
                realm: params.get("realm")?.clone(),
                service: params.get("service").cloned(),
                scope: params.get("scope").cloned(),
            }),
            _ => None,
        }
    }
}

/// `k="v",k2=v2` (quoted values may hold commas).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars
            .by_ref()
            .take_while(|c| *c != '=')
            .collect::<String>()
            .trim()
            .to_ascii_lowercase();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n)
                        }
                    }
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek() {
                if *c == ',' {
                    break;
                }
                value.push(*c);
                chars.next();
            }
            value = value.trim().to_string();
        }
        out.insert(key, value);
    }
    out
}

/// The access a request needs: `repository:NAME:pull` (or `pull,push`), or none (`/v2/`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Access<'a> {
    pub(crate) creds: Option<&'a Credentials>,
    /// `repository:NAME:ACTIONS`, empty for the `/v2/` ping of a login.
    pub(crate) scope: &'a str,
}

/// Authorization headers that worked, per registry, scope and identity, reused until they
/// expire so a pull asks the token service once, not once per blob.
#[derive(Default)]
pub(crate) struct AuthCache {
    entries: Mutex<HashMap<String, (String, Instant)>>,
}

impl AuthCache {
    fn key(host: &str, access: &Access<'_>) -> String {
        let who = access
            .creds
            .map(Credentials::fingerprint)
            .unwrap_or_default();
        format!("{host}\u{0}{}\u{0}{who}", access.scope)
    }

    pub(crate) fn get(&self, host: &str, access: &Access<'_>) -> Option<String> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let k = Self::key(host, access);
        match m.get(&k) {
            Some((v, until)) if *until > Instant::now() => Some(v.clone()),
            Some(_) => {
                m.remove(&k);
                None
            }
            None => None,
        }
    }

    pub(crate) fn put(&self, host: &str, access: &Access<'_>, value: String, ttl: Duration) {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.insert(Self::key(host, access), (value, Instant::now() + ttl));
    }
}

/// The longest a token is kept, whatever its `expires_in` says.
const MAX_TOKEN_TTL_SECS: u64 = 24 * 3600;

/// What a token service answers.
#[derive(Debug, Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    pub(crate) token: String,
    #[serde(default)]
    pub(crate) access_token: String,
    #[serde(default)]
    pub(crate) expires_in: Option<u64>,
}

impl TokenResponse {
    pub(crate) fn bearer(&self) -> Option<String> {
        let t = if self.token.is_empty() {
            &self.access_token
        } else {
            &self.token
        };
        (!t.is_empty()).then(|| format!("Bearer {t}"))
    }

    /// How long to reuse it: what the service says, less a margin; 60 s by default (the
    /// spec's minimum lifetime).
    pub(crate) fn ttl(&self) -> Duration {
        // A token service's `expires_in` is bounded: a day is longer than any real token lives,
        // and an enormous one would overflow the expiry instant.
        let secs = self.expires_in.unwrap_or(60).clamp(10, MAX_TOKEN_TTL_SECS);
        Duration::from_secs(secs - secs / 10)
    }
}

/// The `Authorization` value for a Basic challenge.
pub(crate) fn basic_header(creds: &Credentials) -> String {
    creds.basic()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse() {
        assert_eq!(
            Challenge::parse(r#"Basic realm="vic-test""#),
            Some(Challenge::Basic)
        );
        assert_eq!(
            Challenge::parse(
                r#"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push""#
            ),
            Some(Challenge::Bearer {
                realm: "http://127.0.0.1:1/token".into(),
                service: Some("reg".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            Challenge::parse("Bearer realm=http://x/t, service=s"),
            Some(Challenge::Bearer {
                realm: "http://x/t".into(),
                service: Some("s".into()),
                scope: None
            })
        );
        assert_eq!(Challenge::parse("Bearer service=s"), None, "no realm");
        assert_eq!(Challenge::parse("Negotiate abc"), None);
    }

    #[test]
    fn the_header_the_cli_sends_decodes() {
        let json = r#"{"username":"vic","password":"p+/=?","serveraddress":"127.0.0.1:5000"}"#;
        let url = base64::engine::general_purpose::URL_SAFE.encode(json);
        let c = Credentials::from_header(&url).unwrap();
        assert_eq!(c.username, "vic");
        assert_eq!(c.password, "p+/=?");
        assert_eq!(c.server_address, "127.0.0.1:5000");
        let std = base64::engine::general_purpose::STANDARD.encode(json);
        assert_eq!(Credentials::from_header(&std), Some(c.clone()));
        // What the CLI sends when it has nothing: "{}".
        assert_eq!(Credentials::from_header("e30="), None);
        assert_eq!(Credentials::from_header(""), None);
        assert_eq!(Credentials::from_header("%%%"), None);
        let shown = format!("{c:?}");
        assert!(!shown.contains("p+/=?"), "{shown}");
        assert_eq!(basic_header(&c), "Basic dmljOnArLz0/");
    }

    #[test]
    fn cached_headers_belong_to_one_identity_and_expire() {
        let cache = AuthCache::default();
        let a = Credentials {
            username: "a".into(),
            password: "1".into(),
            ..Default::default()
        };
        let b = Credentials {
            username: "a".into(),
            password: "2".into(),
            ..Default::default()
        };
        let scope = "repository:x:pull";
        let acc = |c| Access { creds: c, scope };
        cache.put(
            "h",
            &acc(Some(&a)),
            "Bearer t".into(),
            Duration::from_secs(60),
        );
        assert_eq!(cache.get("h", &acc(Some(&a))), Some("Bearer t".into()));
        assert_eq!(cache.get("h", &acc(Some(&b))), None, "another password");
        assert_eq!(cache.get("h", &acc(None)), None, "anonymous");
        assert_eq!(cache.get("other", &acc(Some(&a))), None);
        cache.put("h", &acc(None), "Bearer u".into(), Duration::ZERO);
        assert_eq!(cache.get("h", &acc(None)), None, "expired");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(proptest::prelude::ProptestConfig::default().cases.max(1024)))]

        /// A registry's `WWW-Authenticate` header and its token answers never make a panic.
        #[test]
        fn challenges_and_token_bodies_never_panic(
            header in "(Basic|Bearer|bearer)? ?[a-z=\",. ]{0,60}",
            any_header in proptest::prelude::any::<String>(),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let _ = Challenge::parse(&header);
            let _ = Challenge::parse(&any_header);
            if let Ok(t) = serde_json::from_slice::<TokenResponse>(&body) {
                let _ = t.bearer();
                AuthCache::default().put("h", &Access { creds: None, scope: "" }, "v".into(), t.ttl());
            }
            let _ = crate::registry::error_detail(&body, "fallback");
        }
    }

    #[test]
    fn an_enormous_token_lifetime_is_bounded() {
        let t: TokenResponse =
            serde_json::from_str(&format!(r#"{{"token":"t","expires_in":{}}}"#, u64::MAX)).unwrap();
        assert_eq!(
            t.ttl(),
            Duration::from_secs(MAX_TOKEN_TTL_SECS - MAX_TOKEN_TTL_SECS / 10)
        );
        let access = Access {
            creds: None,
            scope: "",
        };
        AuthCache::default().put("h", &access, "Bearer t".into(), t.ttl());
    }
}
