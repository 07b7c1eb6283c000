//! The admin pages' HTML, rendered on the server. Every value that comes from elsewhere
//! (names, log text, errors) goes through [`esc`]; the one script and the style sheet are
//! files of this crate served from `/static/`, so the pages' Content-Security-Policy can
//! forbid inline script.

use std::fmt::Write as _;

use crate::logs::Log;
use crate::status::Check;

/// `s` safe inside HTML text and quoted attributes.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A whole page: `vch` in the header, the navigation when `nav`, then `body`.
pub fn page(vch: &str, title: &str, nav: bool, body: &str) -> String {
    let nav = if nav {
        r#"<nav><a href="/">Summary</a> <a href="/logs">Logs</a> <a href="/logs.tar.gz" id="bundle">Log bundle</a>
<form method="post" action="/logout"><button type="submit" id="logout">Log out</button></form></nav>"#
    } else {
        ""
    };
    format!(
        r#"<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title} · {vch} · VCH Admin</title>
<link rel="stylesheet" href="/static/vicadmin.css">
<script src="/static/vicadmin.js" defer></script>
</head><body>
<header><h1>VCH Admin <span class="vch">{vch}</span></h1>{nav}</header>
<main>{body}</main>
</body></html>
"#,
        title = esc(title),
        vch = esc(vch),
    )
}

/// How a user may log in, for the login page.
#[derive(Debug, Clone, Copy)]
pub struct LoginWays {
    pub password: bool,
    pub certificate: bool,
}

/// The login form, with `error` above it if the last try failed.
pub fn login(vch: &str, ways: LoginWays, error: Option<&str>) -> String {
    let mut body = String::from("<h2>Log in</h2>");
    if let Some(e) = error {
        let _ = write!(body, r#"<p class="error" id="error">{}</p>"#, esc(e));
    }
    if ways.password {
        body.push_str(
            r#"<form method="post" action="/authentication" class="login">
<label>User name <input name="username" id="username" autocomplete="username" required></label>
<label>Password <input name="password" id="password" type="password" autocomplete="current-password" required></label>
<button type="submit" id="login">Log in</button></form>"#,
        );
    } else {
        body.push_str(
            r#"<p id="no-password">Password login is off for this VCH: an operator sets it with <code>vic-machine configure --ops-user USER --ops-password PASSWORD</code>.</p>"#,
        );
    }
    if ways.certificate {
        body.push_str(
            "<p>A browser holding a client certificate of this VCH's certificate authority is let in without a password.</p>",
        );
    }
    page(vch, "Log in", false, &body)
}

/// One row of the summary: a label, a value, and whether it is healthy (`None`: not a
/// health check).
pub struct Row {
    pub label: String,
    pub value: String,
    pub ok: Option<bool>,
}

impl Row {
    pub fn info(label: &str, value: impl Into<String>) -> Self {
        Row {
            label: label.into(),
            value: value.into(),
            ok: None,
        }
    }
    pub fn check(label: &str, c: Check) -> Self {
        Row {
            label: label.into(),
            value: c.detail,
            ok: Some(c.ok),
        }
    }
}

/// The summary page: sections of rows.
pub fn summary(vch: &str, sections: &[(&str, Vec<Row>)]) -> String {
    let mut body = String::from(r#"<h2>Summary</h2>"#);
    for (title, rows) in sections {
        let _ = write!(body, "<section><h3>{}</h3><table>", esc(title));
        for r in rows {
            let (class, mark) = match r.ok {
                Some(true) => ("ok", "✔ "),
                Some(false) => ("bad", "✘ "),
                None => ("", ""),
            };
            let _ = write!(
                body,
                r#"<tr><th>{}</th><td class="{class}">{mark}{}</td></tr>"#,
                esc(&r.label),
                esc(&r.value)
            );
        }
        body.push_str("</table></section>");
    }
    page(vch, "Summary", true, &body)
}

/// The list of logs.
pub fn logs_index(vch: &str, logs: &[Log]) -> String {
    let mut body = String::from("<h2>Logs</h2><ul class=\"logs\">");
    for l in logs {
        let _ = write!(
            body,
            r#"<li><a href="/logs/{name}" id="log-{name}">{title}</a> <a href="/logs/{name}/raw" class="raw">raw</a></li>"#,
            name = esc(&l.name),
            title = esc(&l.title)
        );
    }
    body.push_str("</ul><p>The <a href=\"/logs.tar.gz\">log bundle</a> holds all of them and the VCH's configuration, secrets redacted.</p>");
    page(vch, "Logs", true, &body)
}

/// One log: its last lines, followed live by the page's script.
pub fn log_view(vch: &str, log: &Log, tail: &str) -> String {
    let body = format!(
        r#"<h2>{title}</h2>
<p><label><input type="checkbox" id="follow" checked> Follow</label> <span id="state" class="state"></span></p>
<pre id="log" data-raw="/logs/{name}/raw">{tail}</pre>"#,
        title = esc(&log.title),
        name = esc(&log.name),
        tail = esc(tail),
    );
    page(vch, &log.title, true, &body)
}

/// A page saying `message` (no such log and the like).
pub fn message(vch: &str, title: &str, message: &str) -> String {
    page(vch, title, true, &format!("<p>{}</p>", esc(message)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whatever_comes_from_outside_is_escaped() {
        let log = Log {
            name: "console-x".into(),
            title: "<b>".into(),
            source: crate::logs::Source::File("/x".into()),
        };
        let html = log_view("v<", &log, "<script>alert(1)</script>&\"'");
        assert!(!html.contains("<script>alert"), "{html}");
        assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;&amp;&quot;&#39;"));
        assert!(html.contains("v&lt;") && html.contains("&lt;b&gt;"));
        let s = summary("v", &[("S", vec![Row::info("<k>", "<v>")])]);
        assert!(s.contains("&lt;k&gt;") && s.contains("&lt;v&gt;"));
    }
}
