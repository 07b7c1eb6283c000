//! Manifests and indexes as a registry sends them. Every digest in them is parsed into a
//! [`Digest`] as the JSON is read, and every descriptor must say its size: a manifest that
//! names `sha256:../../x`, another algorithm, or no size does not parse.

use serde::Deserialize;

use crate::digest::Digest;

pub(crate) const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub(crate) const DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

/// A blob or manifest a manifest or index points at.
#[derive(Debug, Deserialize)]
pub(crate) struct Descriptor {
    pub(crate) digest: Digest,
    /// Bytes the content has: what a download is capped at.
    pub(crate) size: u64,
    #[serde(default)]
    pub(crate) platform: Option<DescPlatform>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DescPlatform {
    pub(crate) os: String,
    pub(crate) architecture: String,
    #[serde(default)]
    pub(crate) variant: Option<String>,
}

/// An image manifest (config and layers) or an index (manifests).
#[derive(Debug, Deserialize)]
pub(crate) struct Manifest {
    #[serde(rename = "mediaType", default)]
    pub(crate) media_type: String,
    #[serde(default)]
    pub(crate) config: Option<Descriptor>,
    #[serde(default)]
    pub(crate) layers: Vec<Descriptor>,
    #[serde(default)]
    pub(crate) manifests: Vec<Descriptor>,
}

impl Manifest {
    pub(crate) fn parse(body: &[u8]) -> Result<Manifest, serde_json::Error> {
        serde_json::from_slice(body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const D: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn manifest_with_layer(digest: &str, size: &str) -> String {
        format!(
            r#"{{"schemaVersion":2,"mediaType":"{DOCKER_MANIFEST}",
               "config":{{"mediaType":"c","digest":"{D}","size":2}},
               "layers":[{{"mediaType":"l","digest":"{digest}"{size}}}]}}"#
        )
    }

    #[test]
    fn a_manifest_parses_with_its_digests_and_sizes() {
        let m = Manifest::parse(manifest_with_layer(D, r#","size":7"#).as_bytes()).unwrap();
        assert_eq!(m.layers[0].digest, D);
        assert_eq!(m.layers[0].size, 7);
        assert_eq!(m.config.unwrap().size, 2);
    }

    #[test]
    fn a_digest_that_is_a_path_or_another_algorithm_does_not_parse() {
        for (digest, why) in [
            ("sha256:../../etc/passwd", "invalid checksum digest length"),
            ("sha256:../../x", "invalid checksum digest length"),
            ("sha512:abcd", "unsupported digest algorithm"),
            ("../../x", "invalid checksum digest format"),
        ] {
            let err = Manifest::parse(manifest_with_layer(digest, r#","size":7"#).as_bytes())
                .unwrap_err();
            assert!(err.to_string().contains(why), "{digest}: {err}");
        }
    }

    #[test]
    fn a_descriptor_without_a_size_does_not_parse() {
        let err = Manifest::parse(manifest_with_layer(D, "").as_bytes()).unwrap_err();
        assert!(err.to_string().contains("missing field `size`"), "{err}");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases.max(1024)))]

        /// Whatever bytes a registry sends, parsing answers and does not panic.
        #[test]
        fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Manifest::parse(&body);
        }

        /// Manifests and indexes with arbitrary digest strings: they parse only when every
        /// digest is a valid one.
        #[test]
        fn arbitrary_digests_parse_only_when_valid(
            digests in proptest::collection::vec("(sha256:[0-9a-f./]{62,66}|sha512:[0-9a-f]{4}|[a-z./:]{0,12})", 1..4),
            index in any::<bool>(),
            size in any::<u64>(),
        ) {
            let entries: Vec<String> = digests
                .iter()
                .map(|d| format!(r#"{{"mediaType":"x","digest":{},"size":{size}}}"#, serde_json::json!(d)))
                .collect();
            let key = if index { "manifests" } else { "layers" };
            let body = format!(r#"{{"schemaVersion":2,"{key}":[{}]}}"#, entries.join(","));
            let all_valid = digests.iter().all(|d| Digest::parse(d).is_ok());
            prop_assert_eq!(Manifest::parse(body.as_bytes()).is_ok(), all_valid);
        }
    }
}
