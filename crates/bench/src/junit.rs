//! The outcome of each test in a JUnit XML report as pytest writes it (`--junitxml`): one
//! `<testcase classname=… name=…>` per test, holding a `<failure>`, `<error>` or
//! `<skipped>` (pytest's xfail is a skip whose type is `pytest.xfail`) when it did not
//! simply pass. Read by hand: the subset is small and pytest writes it regularly.

use std::collections::BTreeMap;

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Passed,
    Failed(String),
    Error(String),
    Skipped(String),
    XFailed,
}

impl Outcome {
    /// A short word for tables.
    pub fn word(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::Error(_) => "error",
            Outcome::Skipped(_) => "skipped",
            Outcome::XFailed => "xfailed",
        }
    }

    /// The first line of what it said, for a failure, an error or a skip.
    pub fn message(&self) -> &str {
        match self {
            Outcome::Failed(m) | Outcome::Error(m) | Outcome::Skipped(m) => m,
            _ => "",
        }
    }
}

/// Each test of `xml`, by `classname::name`, and how it ended (an error in teardown after
/// a pass counts as the error).
pub fn outcomes(xml: &str) -> BTreeMap<String, Outcome> {
    let mut out = BTreeMap::new();
    for chunk in xml.split("<testcase ").skip(1) {
        let head_end = chunk.find('>').unwrap_or(chunk.len());
        let head = &chunk[..head_end];
        let (Some(class), Some(name)) = (attr(head, "classname"), attr(head, "name")) else {
            continue;
        };
        let body = if head.ends_with('/') {
            ""
        } else {
            let end = chunk.find("</testcase>").unwrap_or(chunk.len());
            &chunk[head_end.min(end)..end]
        };
        let outcome = if let Some(m) = element(body, "error") {
            Outcome::Error(m)
        } else if let Some(m) = element(body, "failure") {
            Outcome::Failed(m)
        } else if let Some(m) = element(body, "skipped") {
            match body.contains("type=\"pytest.xfail\"") {
                true => Outcome::XFailed,
                false => Outcome::Skipped(m),
            }
        } else {
            Outcome::Passed
        };
        out.insert(format!("{class}::{name}"), outcome);
    }
    out
}

/// The message of the first `<tag …>` in `body`: its `message` attribute's first line.
fn element(body: &str, tag: &str) -> Option<String> {
    let at = body.find(&format!("<{tag}"))?;
    let rest = &body[at..];
    let head = &rest[..rest.find('>').unwrap_or(rest.len())];
    let message = attr(head, "message").unwrap_or_default();
    Some(message.lines().next().unwrap_or_default().to_string())
}

/// Attribute `name="…"` of a tag's head, unescaped.
fn attr(head: &str, name: &str) -> Option<String> {
    let key = format!(" {name}=\"");
    let start = format!(" {head}").find(&key)? + key.len() - 1;
    let rest = &head[start..];
    let value = &rest[..rest.find('"')?];
    Some(unescape(value))
}

fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&#10;", "\n")
        .replace("&amp;", "&")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_outcome_is_read() {
        let xml = r#"<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest">
<testcase classname="tests.integration.a_test.T" name="test_ok" time="0.1" />
<testcase classname="tests.integration.a_test.T" name="test_bad" time="0.2"><failure message="AssertionError: 1 &amp;&#10;more">trace</failure></testcase>
<testcase classname="tests.integration.a_test.T" name="test_err" time="0.2"><error message="failed on setup with &quot;x&quot;">trace</error></testcase>
<testcase classname="tests.integration.a_test.T" name="test_skip" time="0"><skipped type="pytest.skip" message="needs swarm">s</skipped></testcase>
<testcase classname="tests.integration.a_test.T" name="test_xf" time="0"><skipped type="pytest.xfail" message="">x</skipped></testcase>
<testcase classname="tests.integration.a_test.T" name="test_p[a=1]" time="0.1"></testcase>
</testsuite></testsuites>"#;
        let o = outcomes(xml);
        let t = |n: &str| o[&format!("tests.integration.a_test.T::{n}")].clone();
        assert_eq!(t("test_ok"), Outcome::Passed);
        assert_eq!(t("test_bad"), Outcome::Failed("AssertionError: 1 &".into()));
        assert_eq!(
            t("test_err"),
            Outcome::Error("failed on setup with \"x\"".into())
        );
        assert_eq!(t("test_skip"), Outcome::Skipped("needs swarm".into()));
        assert_eq!(t("test_xf"), Outcome::XFailed);
        assert_eq!(t("test_p[a=1]"), Outcome::Passed);
        assert_eq!(o.len(), 6);
    }
}
