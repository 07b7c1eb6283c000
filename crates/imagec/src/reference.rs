//! Image references as Docker reads them: `busybox`, `busybox:1.36`,
//! `127.0.0.1:5000/team/app:v2`, `app@sha256:…`.

use std::fmt;

/// The default registry of unqualified names.
pub const DOCKER_HUB: &str = "docker.io";

/// A parsed, normalised image reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    /// `docker.io`, `127.0.0.1:5000`, …
    pub registry: String,
    /// Repository path in the registry, e.g. `library/busybox`.
    pub repository: String,
    /// The tag; `latest` when neither a tag nor a digest was given.
    pub tag: Option<String>,
    /// `sha256:<hex>` when pinned by digest (validated as a [`crate::digest::Digest`]).
    pub digest: Option<String>,
}

/// A reference Docker would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    #[error("invalid reference format")]
    Invalid,
    #[error("invalid reference format: repository name must be lowercase")]
    Uppercase,
}

/// A path component as Docker's grammar has it: lowercase alphanumeric runs joined by one
/// separator, `.`, `_`, `__`, or any number of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    if b.is_empty() || !alnum(b[0]) || !alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(matches!(sep, "." | "_" | "__") || sep.bytes().all(|x| x == b'-')) {
            return false;
        }
    }
    true
}

/// A tag as Docker's grammar has it: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
pub(crate) fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
        && t.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A pinned digest is parsed as every digest is: only `sha256:<64 lowercase hex>`.
fn valid_digest(d: &str) -> bool {
    crate::digest::Digest::parse(d).is_ok()
}

impl Reference {
    /// Parses and normalises a reference the way the docker CLI and daemon do.
    pub fn parse(s: &str) -> Result<Reference, ReferenceError> {
        let (rest, digest) = match s.split_once('@') {
            Some((n, d)) if valid_digest(d) => (n, Some(d.to_string())),
            Some(_) => return Err(ReferenceError::Invalid),
            None => (s, None),
        };
        let (name, tag) = match rest.rfind(':') {
            Some(i) if !rest[i + 1..].contains('/') => {
                (&rest[..i], Some(rest[i + 1..].to_string()))
            }
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            if !valid_tag(t) {
                return Err(ReferenceError::Invalid);
            }
        }
        if name.is_empty() || name.len() > 255 {
            return Err(ReferenceError::Invalid);
        }
        let (registry, path) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            _ => (DOCKER_HUB.to_string(), name.to_string()),
        };
        // Docker's legacy spellings of the Hub.
        let registry = if registry == "index.docker.io" || registry == "registry-1.docker.io" {
            DOCKER_HUB.to_string()
        } else {
            registry
        };
        if path.chars().any(|c| c.is_ascii_uppercase()) {
            return Err(ReferenceError::Uppercase);
        }
        if registry.chars().any(|c| c.is_whitespace() || c == '/') || registry.is_empty() {
            return Err(ReferenceError::Invalid);
        }
        if !path.split('/').all(valid_component) {
            return Err(ReferenceError::Invalid);
        }
        let repository = if registry == DOCKER_HUB && !path.contains('/') {
            format!("library/{path}")
        } else {
            path
        };
        let tag = if tag.is_none() && digest.is_none() {
            Some("latest".to_string())
        } else {
            tag
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// The familiar name without tag or digest: `busybox`, `127.0.0.1:5000/busybox`.
    pub fn name(&self) -> String {
        if self.registry == DOCKER_HUB {
            self.repository
                .strip_prefix("library/")
                .unwrap_or(&self.repository)
                .to_string()
        } else {
            format!("{}/{}", self.registry, self.repository)
        }
    }

    /// The tag, or `latest`.
    pub fn tag_or_latest(&self) -> &str {
        self.tag.as_deref().unwrap_or("latest")
    }

    /// `name:tag` (what RepoTags hold), when the reference has a tag.
    pub fn tagged(&self) -> Option<String> {
        self.tag.as_ref().map(|t| format!("{}:{t}", self.name()))
    }

    /// `name@digest` for a manifest digest (what RepoDigests hold).
    pub fn with_digest(&self, digest: &str) -> String {
        format!("{}@{digest}", self.name())
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name())?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    /// input, registry, repository, tag, digest, familiar form
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Option<&'static str>,
        Option<&'static str>,
        &'static str,
    );

    #[test]
    fn normalises_like_docker() {
        // input → (registry, repository, tag, digest, familiar form)
        let cases: &[Case] = &[
            (
                "busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
                "busybox:latest",
            ),
            (
                "busybox:1.36",
                "docker.io",
                "library/busybox",
                Some("1.36"),
                None,
                "busybox:1.36",
            ),
            (
                "team/app",
                "docker.io",
                "team/app",
                Some("latest"),
                None,
                "team/app:latest",
            ),
            (
                "docker.io/busybox",
                "docker.io",
                "library/busybox",
                Some("latest"),
                None,
                "busybox:latest",
            ),
            (
                "index.docker.io/library/busybox:1",
                "docker.io",
                "library/busybox",
                Some("1"),
                None,
                "busybox:1",
            ),
            (
                "127.0.0.1:5000/busybox",
                "127.0.0.1:5000",
                "busybox",
                Some("latest"),
                None,
                "127.0.0.1:5000/busybox:latest",
            ),
            (
                "localhost/a/b:v",
                "localhost",
                "a/b",
                Some("v"),
                None,
                "localhost/a/b:v",
            ),
            (
                "quay.io/x/y",
                "quay.io",
                "x/y",
                Some("latest"),
                None,
                "quay.io/x/y:latest",
            ),
            (
                "localhost:5000/a__b-c--d.e:V1.0_x",
                "localhost:5000",
                "a__b-c--d.e",
                Some("V1.0_x"),
                None,
                "localhost:5000/a__b-c--d.e:V1.0_x",
            ),
            (
                "Reg.Example:443/x",
                "Reg.Example:443",
                "x",
                Some("latest"),
                None,
                "Reg.Example:443/x:latest",
            ),
            (
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "docker.io",
                "library/busybox",
                None,
                Some(D),
                "busybox@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
            (
                "r:1/b:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                "r:1",
                "b",
                Some("t"),
                Some(D),
                "r:1/b:t@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            ),
        ];
        for &(input, reg, repo, tag, digest, shown) in cases {
            let r = Reference::parse(input).unwrap();
            assert_eq!(r.registry, reg, "{input}");
            assert_eq!(r.repository, repo, "{input}");
            assert_eq!(r.tag.as_deref(), tag, "{input}");
            assert_eq!(r.digest.as_deref(), digest, "{input}");
            assert_eq!(r.to_string(), shown, "{input}");
        }
        let r = Reference::parse("127.0.0.1:5000/team/busybox:1.0").unwrap();
        assert_eq!(r.name(), "127.0.0.1:5000/team/busybox");
        assert_eq!(r.tag_or_latest(), "1.0");
        let pinned = Reference::parse(&format!("busybox@{D}")).unwrap();
        assert_eq!(pinned.tag_or_latest(), "latest");
        assert_eq!(pinned.tagged(), None);
    }

    #[test]
    fn refuses_what_docker_refuses() {
        assert_eq!(Reference::parse("Busybox"), Err(ReferenceError::Uppercase));
        assert_eq!(
            Reference::parse("127.0.0.1:5000/Busybox"),
            Err(ReferenceError::Uppercase)
        );
        assert_eq!(
            ReferenceError::Uppercase.to_string(),
            "invalid reference format: repository name must be lowercase"
        );
        assert_eq!(
            ReferenceError::Invalid.to_string(),
            "invalid reference format"
        );
        for bad in [
            "",
            "busybox:",
            "a@sha256:12",
            "bad//name",
            "-x",
            "x:bad tag",
            ":tag",
            "a..b",
            "a___b",
            "a_-b",
            "x/",
            "/x",
            "busybox:-tag",
            "a@md5:0",
        ] {
            assert_eq!(
                Reference::parse(bad),
                Err(ReferenceError::Invalid),
                "{bad:?}"
            );
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// A path component of Docker's grammar.
        const COMPONENT: &str = "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}";

        fn reference(
        ) -> impl Strategy<Value = (Option<String>, Vec<String>, Option<String>, Option<String>)>
        {
            (
                proptest::option::of(
                    "(localhost|[a-z]{1,8}\\.[a-z]{2,4}|127\\.0\\.0\\.1)(:[1-9][0-9]{0,4})?",
                ),
                proptest::collection::vec(COMPONENT, 1..4),
                proptest::option::of("[A-Za-z0-9_][A-Za-z0-9_.-]{0,20}"),
                proptest::option::of("sha256:[0-9a-f]{64}"),
            )
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases.max(2048)))]

            /// Whatever a client sends, parsing answers and does not panic.
            #[test]
            fn arbitrary_strings_never_panic(s in any::<String>()) {
                let _ = Reference::parse(&s);
            }

            /// Near misses of the grammar (separators, colons, at signs) never panic, and what
            /// parses has a valid digest.
            #[test]
            fn grammar_like_strings_never_panic(s in "[a-zA-Z0-9:/@._-]{0,80}") {
                if let Ok(r) = Reference::parse(&s) {
                    prop_assert!(r.digest.as_deref().is_none_or(|d| crate::digest::Digest::parse(d).is_ok()));
                }
            }

            /// A valid reference parses, prints in its familiar form, and that form parses to
            /// the same reference.
            #[test]
            fn valid_references_round_trip((registry, path, tag, digest) in reference()) {
                let mut s = String::new();
                if let Some(r) = &registry {
                    s.push_str(r);
                    s.push('/');
                }
                s.push_str(&path.join("/"));
                if let Some(t) = &tag {
                    s.push(':');
                    s.push_str(t);
                }
                if let Some(d) = &digest {
                    s.push('@');
                    s.push_str(d);
                }
                prop_assume!(s.len() <= 255);
                let r = Reference::parse(&s).unwrap();
                prop_assert_eq!(&r.tag, &match (&tag, &digest) {
                    (None, None) => Some("latest".to_string()),
                    (t, _) => t.clone(),
                });
                prop_assert_eq!(&r.digest, &digest);
                let again = Reference::parse(&r.to_string()).unwrap();
                prop_assert_eq!(again, r);
            }
        }
    }
}
