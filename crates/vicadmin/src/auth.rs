//! Who may see the admin pages. A browser (or `curl`) gets in one of two ways:
//!
//! ```text
//!   client certificate of the VCH's CA ── checked in the TLS handshake ──► in, no cookie
//!   operator's user and password (--ops-user/--ops-password)
//!        POST /authentication ── PBKDF2 check ──► session cookie: Secure, HttpOnly,
//!                                                  SameSite=Strict, 30 min idle, 12 h at most
//! ```
//!
//! The password is kept only as a salted PBKDF2-HMAC-SHA256 hash (in the VCH's configuration
//! document, which only root reads). Sessions live in the appliance's memory, at most
//! [`MAX_SESSIONS`]: a restart logs everyone out, and a flood of logins cannot grow it.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};

/// PBKDF2 rounds: about 50 ms of one core here, so a guessing client is slow and the
/// appliance is not (logins are also taken a few at a time, see `lib.rs`).
const ITERATIONS: u32 = 100_000;
const SALT_LEN: usize = 16;
const HASH_LEN: usize = 32;
const SCHEME: &str = "pbkdf2-sha256";

/// Sessions held at once; past it the least recently used goes.
pub const MAX_SESSIONS: usize = 256;
/// A session not used for this long is over.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// A session is over this long after its login, used or not.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// The session cookie's name.
pub const COOKIE: &str = "vicadmin-session";

/// The operator who may log in with a password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operator {
    pub user: String,
    /// What [`hash_password`] made of the password.
    pub password_hash: String,
}

impl Operator {
    /// Whether `user` and `password` are the operator's (the hash is computed even for a
    /// wrong user, so the answer takes as long either way).
    pub fn admits(&self, user: &str, password: &str) -> bool {
        let password_ok = verify_password(&self.password_hash, password);
        password_ok && same(user.as_bytes(), self.user.as_bytes())
    }
}

/// Whether `a` and `b` are equal, in a time that depends on their lengths only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `pbkdf2-sha256$ROUNDS$SALT$HASH` (hex) of `password` with a fresh random salt.
pub fn hash_password(password: &str) -> String {
    let mut salt = [0u8; SALT_LEN];
    SystemRandom::new()
        .fill(&mut salt)
        .expect("the system's random source works");
    let mut hash = [0u8; HASH_LEN];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(ITERATIONS).expect("non-zero"),
        &salt,
        password.as_bytes(),
        &mut hash,
    );
    format!(
        "{SCHEME}${ITERATIONS}${}${}",
        hex::encode(salt),
        hex::encode(hash)
    )
}

/// Whether `password` is the one `stored` (from [`hash_password`]) was made of; a stored
/// value of another form admits nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some(SCHEME), Some(rounds), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(rounds), Ok(salt), Ok(hash)) = (
        rounds.parse().ok().and_then(NonZeroU32::new),
        hex::decode(salt),
        hex::decode(hash),
    ) else {
        return false;
    };
    // A document cannot make a login cost more than ten times the usual.
    if rounds.get() > ITERATIONS * 10 {
        return false;
    }
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds,
        &salt,
        password.as_bytes(),
        &hash,
    )
    .is_ok()
}

struct Session {
    user: String,
    opened: Instant,
    used: Instant,
}

/// The logged-in sessions, by token.
pub struct Sessions {
    map: Mutex<HashMap<String, Session>>,
    rng: SystemRandom,
}

impl Default for Sessions {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
            rng: SystemRandom::new(),
        }
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new session for `user`; its token (32 random bytes, hex).
    pub fn open(&self, user: &str) -> String {
        let mut bytes = [0u8; 32];
        self.rng
            .fill(&mut bytes)
            .expect("the system's random source works");
        let token = hex::encode(bytes);
        let now = Instant::now();
        let mut map = self.lock();
        map.retain(|_, s| live(s, now));
        if map.len() >= MAX_SESSIONS {
            let oldest = map
                .iter()
                .min_by_key(|(_, s)| s.used)
                .map(|(t, _)| t.clone());
            if let Some(t) = oldest {
                map.remove(&t);
            }
        }
        map.insert(
            token.clone(),
            Session {
                user: user.to_string(),
                opened: now,
                used: now,
            },
        );
        token
    }

    /// The user of session `token` if it is still open (and marks it used).
    pub fn user(&self, token: &str) -> Option<String> {
        let now = Instant::now();
        let mut map = self.lock();
        let s = map.get_mut(token)?;
        if !live(s, now) {
            map.remove(token);
            return None;
        }
        s.used = now;
        Some(s.user.clone())
    }

    /// Ends session `token`.
    pub fn close(&self, token: &str) {
        self.lock().remove(token);
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn live(s: &Session, now: Instant) -> bool {
    now.duration_since(s.used) < IDLE && now.duration_since(s.opened) < LIFETIME
}

/// The session token in a `Cookie` header, if any.
pub fn token_in(cookie_header: &str) -> Option<&str> {
    cookie_header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == COOKIE)
        .map(|(_, v)| v)
        .filter(|v| v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value that keeps session `token`.
pub fn set_cookie(token: &str) -> String {
    format!(
        "{COOKIE}={token}; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age={}",
        LIFETIME.as_secs()
    )
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; Secure; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_only() {
        let h = hash_password("s3cret pass");
        assert!(h.starts_with("pbkdf2-sha256$100000$"), "{h}");
        assert!(verify_password(&h, "s3cret pass"));
        assert!(!verify_password(&h, "s3cret pas"));
        assert_ne!(h, hash_password("s3cret pass"), "salted");
        for bad in ["", "plain", "pbkdf2-sha256$0$00$00", "md5$1$00$00"] {
            assert!(!verify_password(bad, ""), "{bad}");
        }
        let costly = h.replacen("100000", "5000000", 1);
        assert!(!verify_password(&costly, "s3cret pass"));
    }

    #[test]
    fn the_operator_needs_both_user_and_password() {
        let op = Operator {
            user: "ops".into(),
            password_hash: hash_password("pw"),
        };
        assert!(op.admits("ops", "pw"));
        assert!(!op.admits("root", "pw"));
        assert!(!op.admits("ops", "PW"));
    }

    #[test]
    fn sessions_open_close_and_stay_bounded() {
        let s = Sessions::default();
        let t = s.open("ops");
        assert_eq!(s.user(&t).as_deref(), Some("ops"));
        assert_eq!(token_in(&format!("a=b; {COOKIE}={t}")), Some(t.as_str()));
        assert_eq!(token_in(&format!("{COOKIE}=short")), None);
        s.close(&t);
        assert_eq!(s.user(&t), None);
        let first = s.open("ops");
        for _ in 0..MAX_SESSIONS {
            s.open("ops");
        }
        assert_eq!(s.len(), MAX_SESSIONS);
        assert_eq!(s.user(&first), None, "the least recently used went");
        let c = set_cookie(&first);
        for part in ["Secure", "HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(c.contains(part), "{c}");
        }
    }
}
