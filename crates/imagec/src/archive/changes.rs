//! `--change` instructions (`docker import -c`), applied as dockerd applies them.

use super::*;

/// Instructions `docker import --change` and `docker commit --change` accept.
pub(super) const CHANGE_COMMANDS: &[&str] = &[
    "cmd",
    "entrypoint",
    "env",
    "expose",
    "label",
    "onbuild",
    "stopsignal",
    "user",
    "volume",
    "workdir",
];

/// Every other Dockerfile instruction (refused as a change rather than unknown).
pub(super) const OTHER_COMMANDS: &[&str] = &[
    "add",
    "arg",
    "copy",
    "from",
    "healthcheck",
    "maintainer",
    "run",
    "shell",
];

/// `$NAME` or `${NAME}` (after the `$`), looked up in `env` (`KEY=value` entries).
pub(super) fn expand(
    chars: &mut std::iter::Peekable<std::str::Chars<'_>>,
    env: &[String],
) -> String {
    let lookup = |name: &str| {
        env.iter()
            .rev()
            .find_map(|e| e.strip_prefix(name).and_then(|r| r.strip_prefix('=')))
            .map(str::to_string)
    };
    if chars.peek() == Some(&'{') {
        chars.next();
        let mut inner = String::new();
        for c in chars.by_ref() {
            if c == '}' {
                break;
            }
            inner.push(c);
        }
        return match inner.split_once(":-") {
            Some((name, default)) => lookup(name)
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| default.to_string()),
            None => match inner.split_once(":+") {
                Some((name, alt)) => {
                    if lookup(name).is_some_and(|v| !v.is_empty()) {
                        alt.to_string()
                    } else {
                        String::new()
                    }
                }
                None => lookup(&inner).unwrap_or_default(),
            },
        };
    }
    let mut name = String::new();
    while let Some(&c) = chars.peek() {
        if c.is_ascii_alphanumeric() || c == '_' {
            name.push(c);
            chars.next();
        } else {
            break;
        }
    }
    if name.is_empty() {
        return "$".into();
    }
    lookup(&name).unwrap_or_default()
}

/// A Dockerfile argument as its shell-like lexer reads it: quotes removed, backslash escapes
/// undone, `$VAR` replaced from `env`; split into words at unquoted blanks when `split`.
pub(super) fn words(s: &str, env: &[String], split: bool) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            c if split && c.is_whitespace() => {
                if in_word {
                    out.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '\\' => {
                in_word = true;
                if let Some(n) = chars.next() {
                    cur.push(n);
                }
            }
            '\'' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('\'') => break,
                        Some(x) => cur.push(x),
                        None => return Err(
                            "unexpected end of statement while looking for matching single-quote"
                                .into(),
                        ),
                    }
                }
            }
            '"' => {
                in_word = true;
                loop {
                    match chars.next() {
                        Some('"') => break,
                        Some('\\') => match chars.peek() {
                            Some('"' | '\\' | '$') => cur.push(chars.next().unwrap_or('\\')),
                            _ => cur.push('\\'),
                        },
                        Some('$') => cur.push_str(&expand(&mut chars, env)),
                        Some(x) => cur.push(x),
                        None => return Err(
                            "unexpected end of statement while looking for matching double-quote"
                                .into(),
                        ),
                    }
                }
            }
            '$' => {
                in_word = true;
                cur.push_str(&expand(&mut chars, env));
            }
            c => {
                in_word = true;
                cur.push(c);
            }
        }
    }
    if in_word || !split {
        out.push(cur);
    }
    Ok(out)
}

/// `["a", "b"]` (exec form), or `None` for the shell form.
pub(super) fn json_form(rest: &str) -> Option<Vec<String>> {
    rest.trim_start()
        .starts_with('[')
        .then(|| serde_json::from_str::<Vec<String>>(rest).ok())
        .flatten()
}

/// `name=value …` pairs, or the legacy `name value` form.
pub(super) fn name_values(
    cmd: &str,
    rest: &str,
    env: &[String],
) -> Result<Vec<(String, String)>, String> {
    let first = rest.split_whitespace().next().unwrap_or("");
    if first.is_empty() {
        return Err(format!("{cmd} requires at least one argument"));
    }
    if !first.contains('=') {
        let (key, value) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        let value = words(value, env, false)?.concat();
        return Ok(vec![(key.to_string(), value)]);
    }
    let mut out = Vec::new();
    for w in words(rest, env, true)? {
        let Some((k, v)) = w.split_once('=') else {
            return Err(format!(
                "Syntax error - can't find = in {w:?}. Must be of the form: name=value"
            ));
        };
        if k.is_empty() {
            return Err(format!("{cmd} names can not be blank"));
        }
        out.push((k.to_string(), v.to_string()));
    }
    Ok(out)
}

/// `a/../b` → `/b`: a clean absolute path.
pub(super) fn clean_abs(p: &str) -> String {
    format!("/{}", normalize(p, true).unwrap_or_default())
}

/// Docker's `EXPOSE` specs (`80`, `53/udp`, `8000-8002/tcp`) → `port/proto` keys.
pub(super) fn port_keys(spec: &str) -> Result<Vec<String>, String> {
    let (ports, proto) = spec.split_once('/').unwrap_or((spec, "tcp"));
    let proto = proto.to_ascii_lowercase();
    if !matches!(proto.as_str(), "tcp" | "udp" | "sctp") {
        return Err(format!("invalid proto: {proto}"));
    }
    let bad = || format!("invalid containerPort: {ports}");
    let (lo, hi) = match ports.split_once('-') {
        Some((a, b)) => (
            a.parse::<u16>().map_err(|_| bad())?,
            b.parse::<u16>().map_err(|_| bad())?,
        ),
        None => {
            let p = ports.parse::<u16>().map_err(|_| bad())?;
            (p, p)
        }
    };
    if hi < lo {
        return Err(format!(
            "invalid range specified for container port: {ports}"
        ));
    }
    Ok((lo..=hi).map(|p| format!("{p}/{proto}")).collect())
}

/// The container configuration an import starts from (every field empty), with `changes`
/// applied as dockerd applies them.
pub(super) fn container_config(changes: &[String]) -> Result<Value, ArchiveError> {
    apply_changes(empty_container_config(), changes)
}

/// `changes` applied to the container configuration `c` (`docker commit --change`).
pub(super) fn apply_changes(mut c: Value, changes: &[String]) -> Result<Value, ArchiveError> {
    let mut cmd_set = false;
    // Docker joins the changes into one Dockerfile; a trailing backslash continues a line.
    let joined = changes.join("\n").replace("\\\n", " ");
    for line in joined.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (word, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        let cmd = word.to_ascii_lowercase();
        if !CHANGE_COMMANDS.contains(&cmd.as_str()) {
            return Err(ArchiveError::Change(
                if OTHER_COMMANDS.contains(&cmd.as_str()) {
                    format!("{cmd} is not a valid change command")
                } else {
                    format!("unknown instruction: {}", word.to_ascii_uppercase())
                },
            ));
        }
        apply_change(&mut c, &cmd, rest, &mut cmd_set).map_err(ArchiveError::Change)?;
    }
    Ok(c)
}

pub(super) fn apply_change(
    c: &mut Value,
    cmd: &str,
    rest: &str,
    cmd_set: &mut bool,
) -> Result<(), String> {
    let upper = cmd.to_ascii_uppercase();
    let env: Vec<String> = c["Env"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let one = |rest: &str| -> Result<String, String> {
        if rest.is_empty() {
            return Err(format!("{upper} requires exactly one argument"));
        }
        Ok(words(rest, &env, false)?.concat())
    };
    let exec_or_shell = |rest: &str| -> Vec<String> {
        json_form(rest).unwrap_or_else(|| vec!["/bin/sh".into(), "-c".into(), rest.to_string()])
    };
    let set_in = |c: &mut Value, field: &str, key: String, v: Value| {
        if !c[field].is_object() {
            c[field] = json!({});
        }
        c[field][key] = v;
    };
    match cmd {
        "cmd" => {
            c["Cmd"] = json!(exec_or_shell(rest));
            *cmd_set = true;
        }
        "entrypoint" => {
            c["Entrypoint"] = json!(exec_or_shell(rest));
            // As in a Dockerfile: an ENTRYPOINT drops the CMD set before it elsewhere.
            if !*cmd_set {
                c["Cmd"] = Value::Null;
            }
        }
        "env" => {
            let mut env = env.clone();
            for (k, v) in name_values("ENV", rest, &env.clone())? {
                let entry = format!("{k}={v}");
                match env
                    .iter()
                    .position(|e| e.split_once('=').map(|p| p.0) == Some(&k))
                {
                    Some(i) => env[i] = entry,
                    None => env.push(entry),
                }
            }
            c["Env"] = json!(env);
        }
        "label" => {
            for (k, v) in name_values("LABEL", rest, &env)? {
                set_in(c, "Labels", k, json!(v));
            }
        }
        "expose" => {
            let specs = words(rest, &env, true)?;
            if specs.is_empty() {
                return Err("EXPOSE requires at least one argument".into());
            }
            for s in specs {
                for key in port_keys(&s)? {
                    set_in(c, "ExposedPorts", key, json!({}));
                }
            }
        }
        "volume" => {
            let vols = match json_form(rest) {
                Some(v) => v,
                None => words(rest, &env, true)?,
            };
            if vols.is_empty() {
                return Err("VOLUME requires at least one argument".into());
            }
            for v in vols {
                let v = v.trim().to_string();
                if v.is_empty() {
                    return Err("VOLUME specified can not be an empty string".into());
                }
                set_in(c, "Volumes", v, json!({}));
            }
        }
        "workdir" => {
            let dir = one(rest)?;
            let current = c["WorkingDir"].as_str().unwrap_or("").to_string();
            c["WorkingDir"] = json!(if dir.starts_with('/') {
                clean_abs(&dir)
            } else {
                clean_abs(&format!("{current}/{dir}"))
            });
        }
        "user" => c["User"] = json!(one(rest)?),
        "stopsignal" => {
            let sig = one(rest)?;
            let name = sig.trim_start_matches("SIG");
            if sig.is_empty()
                || !(sig.parse::<u32>().is_ok()
                    || name.chars().all(|ch| {
                        ch.is_ascii_uppercase() || ch.is_ascii_digit() || ch == '+' || ch == '-'
                    }))
            {
                return Err(format!("Invalid signal: {sig}"));
            }
            c["StopSignal"] = json!(sig);
        }
        "onbuild" => {
            let inner = rest
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_ascii_uppercase();
            match inner.as_str() {
                "" => return Err("ONBUILD requires at least one argument".into()),
                "ONBUILD" => {
                    return Err("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed".into())
                }
                "FROM" | "MAINTAINER" => {
                    return Err(format!("{inner} isn't allowed as an ONBUILD trigger"))
                }
                _ => {}
            }
            let (_, args) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let trigger = format!("{inner} {}", args.trim()).trim().to_string();
            let mut list = c["OnBuild"].as_array().cloned().unwrap_or_default();
            list.push(json!(trigger));
            c["OnBuild"] = json!(list);
        }
        _ => return Err(format!("{cmd} is not a valid change command")),
    }
    Ok(())
}
