//! `--log-driver json-file` and its `--log-opt`s, read as moby's json-file driver reads them
//! (its option names, its size syntax, its error words). They bound what the port layer
//! keeps of a container's output on disk ([`LogBounds`]):
//!
//! | option | vic |
//! |---|---|
//! | `max-size` | applied: `10k`, `10m`, `1g` (decimal units, as moby's `units.FromHumanSize`), `-1` unlimited |
//! | `max-file` | applied: at least 1; 1 when only `max-size` is given (moby's default) |
//! | `compress` | `false` accepted; `true` refused (rotated segments are not compressed) |
//! | `labels`, `labels-regex`, `env`, `env-regex`, `tag` | refused when set: vic's log records carry no attributes |
//! | anything else | refused: `unknown log opt 'x' for json-file log driver` |
//!
//! `--log-driver none` keeps no log: `docker logs` is refused as dockerd refuses it, and the
//! output passes to attached clients through [`LogBounds::PASS_THROUGH`]. Options given with
//! it are refused, as the docker CLI refuses them.
//!
//! With neither `max-size` nor `max-file` the default applies, [`DEFAULT_MAX_SIZE`] (`20m`) ×
//! [`DEFAULT_MAX_FILE`] (5), the defaults of Docker's bounded `local` driver; `max-file` alone
//! takes the default `max-size` (moby's needs a `max-size` to have an effect; vic always has
//! one unless `max-size=-1`). Inspect shows the options as given, as dockerd shows them
//! (its own `local` driver, bounded by default too, shows none); `docker info` says what
//! the default is.

use std::collections::BTreeMap;

use portlayer::logs::{DEFAULT_MAX_FILE, DEFAULT_MAX_SIZE};
use portlayer::LogBounds;

use super::host_config::HostConfig;
use super::refusal::{Refused, Unsupported};

const NO_ATTRIBUTES: &str =
    "vic's log records carry no attributes (docker logs --details has none to show)";

/// The log settings a create applies: the bounds, and the options inspect shows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOpts {
    pub bounds: LogBounds,
    /// `LogConfig.Config`: the options as given.
    pub shown: BTreeMap<String, String>,
    /// `--log-driver none`.
    pub none: bool,
}

impl LogOpts {
    /// `--log-driver none`.
    fn none() -> Self {
        LogOpts {
            bounds: LogBounds::PASS_THROUGH,
            shown: BTreeMap::new(),
            none: true,
        }
    }

    /// The driver inspect names.
    pub fn driver(&self) -> &'static str {
        if self.none {
            "none"
        } else {
            "json-file"
        }
    }
}

fn driver(h: &HostConfig) -> &str {
    h.log_config
        .as_ref()
        .and_then(|l| l.kind.as_deref())
        .unwrap_or_default()
}

fn options(h: &HostConfig) -> BTreeMap<String, String> {
    h.log_config
        .as_ref()
        .and_then(|l| l.config.clone())
        .unwrap_or_default()
}

/// The log drivers dockerd has on Linux: another name is no driver at all.
const DRIVERS: [&str; 11] = [
    "awslogs",
    "fluentd",
    "gcplogs",
    "gelf",
    "journald",
    "json-file",
    "local",
    "logentries",
    "none",
    "splunk",
    "syslog",
];

/// A driver no dockerd has, refused in moby's words (before anything else: it is not an
/// option vic leaves out but a name that means nothing).
pub fn registered(h: &HostConfig) -> Result<(), Refused> {
    match driver(h) {
        "" => Ok(()),
        name if DRIVERS.contains(&name) => Ok(()),
        name => Err(Refused::Invalid(format!(
            "logger: no log driver named '{name}' is registered"
        ))),
    }
}

/// The log settings vic does not apply, each naming its flag: another driver, or json-file
/// options that would need attributes or compression.
pub fn unsupported(h: &HostConfig) -> Vec<Unsupported> {
    let kind = driver(h);
    let refuse = |flag: String, why: &str| Unsupported {
        flag,
        why: why.to_string(),
    };
    if kind == "none" {
        return (options(h).into_keys())
            .map(|k| refuse(format!("--log-opt {k}"), "the none log driver keeps no log"))
            .collect();
    }
    if !kind.is_empty() && kind != "json-file" {
        return vec![refuse(
            format!("--log-driver {kind}"),
            "only the json-file and none log drivers are available",
        )];
    }
    let mut out = Vec::new();
    for (k, v) in options(h) {
        match k.as_str() {
            "labels" | "labels-regex" | "env" | "env-regex" | "tag" if !v.is_empty() => {
                out.push(refuse(format!("--log-opt {k}"), NO_ATTRIBUTES))
            }
            "compress" if go_parse_bool(&v) == Ok(true) => out.push(refuse(
                "--log-opt compress".into(),
                "rotated log files are not compressed",
            )),
            _ => {}
        }
    }
    out
}

/// The bounds the options set, or why moby would refuse them, in its words.
pub fn settings(h: &HostConfig) -> Result<LogOpts, Refused> {
    match driver(h) {
        "" | "json-file" => {}
        "none" => return Ok(LogOpts::none()),
        _ => return Ok(LogOpts::default()),
    }
    let opts = options(h);
    let invalid = |m: String| Refused::Invalid(m);
    for k in opts.keys() {
        if !matches!(
            k.as_str(),
            "max-size"
                | "max-file"
                | "compress"
                | "labels"
                | "labels-regex"
                | "env"
                | "env-regex"
                | "tag"
        ) {
            return Err(invalid(format!(
                "unknown log opt '{k}' for json-file log driver"
            )));
        }
    }
    let max_size = match opts.get("max-size").map(String::as_str) {
        None => None,
        Some("-1") => Some(None),
        Some(v) => match from_human_size(v).map_err(invalid)? {
            n if n <= 0 => return Err(invalid("max-size must be a positive number".into())),
            n => Some(Some(n as u64)),
        },
    };
    let max_file = match opts.get("max-file") {
        None => None,
        Some(v) => {
            let n: i64 = v
                .parse()
                .map_err(|_| invalid(format!("strconv.Atoi: parsing {v:?}: invalid syntax")))?;
            if n < 1 {
                return Err(invalid("max-file cannot be less than 1".into()));
            }
            Some(u32::try_from(n).unwrap_or(u32::MAX))
        }
    };
    if let Some(v) = opts.get("compress") {
        go_parse_bool(v).map_err(invalid)?;
    }
    let bounds = match (max_size, max_file) {
        (None, n) => LogBounds {
            max_size: Some(DEFAULT_MAX_SIZE),
            max_file: n.unwrap_or(DEFAULT_MAX_FILE),
        },
        (Some(size), n) => LogBounds {
            max_size: size,
            max_file: n.unwrap_or(1),
        },
    };
    Ok(LogOpts {
        bounds,
        shown: opts,
        none: false,
    })
}

/// Go's `strconv.ParseBool`, with its error words.
fn go_parse_bool(v: &str) -> Result<bool, String> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!("strconv.ParseBool: parsing {v:?}: invalid syntax")),
    }
}

/// moby's `units.FromHumanSize`: a decimal number, then an optional space and a unit of
/// `b`, `k`, `m`, `g`, `t`, `p` (×1000 each), optionally followed by `b` or `ib`, any case;
/// `10m` is 10,000,000 bytes. Errors are worded as it words them.
pub fn from_human_size(size: &str) -> Result<i64, String> {
    let Some(sep) = size
        .bytes()
        .rposition(|b| b.is_ascii_digit() || b == b'.' || b == b' ')
    else {
        return Err(format!("invalid size: '{size}'"));
    };
    let (num, sfx) = if size.as_bytes()[sep] == b' ' {
        (&size[..sep], &size[sep + 1..])
    } else {
        (&size[..sep + 1], &size[sep + 1..])
    };
    let value: f64 = num
        .parse()
        .map_err(|_| format!("strconv.ParseFloat: parsing {num:?}: invalid syntax"))?;
    if value < 0.0 {
        return Err(format!("invalid size: '{size}'"));
    }
    if sfx.is_empty() {
        return Ok(value as i64);
    }
    let bad = || format!("invalid suffix: '{sfx}'");
    if sfx.len() > 3 {
        return Err(bad());
    }
    let lower = sfx.to_ascii_lowercase();
    let unit = match lower.as_bytes()[0] {
        b'b' if lower.len() == 1 => return Ok(value as i64),
        b'k' => 1e3,
        b'm' => 1e6,
        b'g' => 1e9,
        b't' => 1e12,
        b'p' => 1e15,
        _ => return Err(bad()),
    };
    match &lower[1..] {
        "" | "b" | "ib" => Ok((value * unit) as i64),
        _ => Err(bad()),
    }
}

#[cfg(test)]
mod tests {
    use super::super::host_config::LogConfig;
    use super::*;

    fn host(kind: &str, opts: &[(&str, &str)]) -> HostConfig {
        HostConfig {
            log_config: Some(LogConfig {
                kind: Some(kind.to_string()),
                config: Some(
                    opts.iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
            }),
            ..HostConfig::default()
        }
    }

    fn invalid(opts: &[(&str, &str)]) -> String {
        match settings(&host("json-file", opts)) {
            Err(Refused::Invalid(m)) => m,
            other => panic!("{opts:?} gave {other:?}"),
        }
    }

    #[test]
    fn sizes_are_read_as_moby_reads_them() {
        let ok = |s: &str| from_human_size(s).unwrap();
        assert_eq!(ok("10"), 10);
        assert_eq!(ok("10k"), 10_000);
        assert_eq!(ok("10K"), 10_000);
        assert_eq!(ok("10m"), 10_000_000);
        assert_eq!(ok("10MB"), 10_000_000);
        assert_eq!(
            ok("10MiB"),
            10_000_000,
            "FromHumanSize is decimal, i or not"
        );
        assert_eq!(ok("1g"), 1_000_000_000);
        assert_eq!(ok("1.5k"), 1500);
        assert_eq!(ok("32 m"), 32_000_000);
        assert_eq!(ok("7b"), 7);
        assert_eq!(ok("20m"), DEFAULT_MAX_SIZE as i64);
        assert_eq!(from_human_size("m").unwrap_err(), "invalid size: 'm'");
        assert_eq!(from_human_size("-5m").unwrap_err(), "invalid size: '-5m'");
        assert_eq!(from_human_size("10x").unwrap_err(), "invalid suffix: 'x'");
        assert_eq!(
            from_human_size("10kbb").unwrap_err(),
            "invalid suffix: 'kbb'"
        );
        assert_eq!(from_human_size("10bk").unwrap_err(), "invalid suffix: 'bk'");
        assert_eq!(
            from_human_size("1.2.3m").unwrap_err(),
            "strconv.ParseFloat: parsing \"1.2.3\": invalid syntax"
        );
    }

    #[test]
    fn no_options_get_the_default_cap_and_inspect_shows_none() {
        for h in [HostConfig::default(), host("", &[]), host("json-file", &[])] {
            let l = settings(&h).unwrap();
            assert_eq!(l.bounds, LogBounds::default());
            assert!(l.shown.is_empty(), "{:?}", l.shown);
        }
    }

    #[test]
    fn max_size_and_max_file_set_the_bounds() {
        let l = settings(&host(
            "json-file",
            &[("max-size", "10k"), ("max-file", "3")],
        ))
        .unwrap();
        assert_eq!(
            l.bounds,
            LogBounds {
                max_size: Some(10_000),
                max_file: 3
            }
        );
        assert_eq!(l.shown["max-size"], "10k");
        let only_size = settings(&host("json-file", &[("max-size", "1m")])).unwrap();
        assert_eq!(only_size.bounds.max_file, 1, "moby's default max-file");
        assert!(!only_size.shown.contains_key("max-file"), "as given");
        let only_files = settings(&host("json-file", &[("max-file", "2")])).unwrap();
        assert_eq!(only_files.bounds.max_size, Some(DEFAULT_MAX_SIZE));
        assert!(!only_files.shown.contains_key("max-size"), "as given");
        let unlimited = settings(&host("json-file", &[("max-size", "-1")])).unwrap();
        assert_eq!(unlimited.bounds.max_size, None);
        assert_eq!(unlimited.shown["max-size"], "-1");
        let quiet = settings(&host("json-file", &[("compress", "false"), ("tag", "")])).unwrap();
        assert_eq!(quiet.bounds, LogBounds::default());
        assert_eq!(quiet.shown["compress"], "false");
    }

    #[test]
    fn bad_values_and_unknown_options_are_refused_in_mobys_words() {
        assert_eq!(
            invalid(&[("max-file", "0")]),
            "max-file cannot be less than 1"
        );
        assert_eq!(
            invalid(&[("max-file", "two")]),
            "strconv.Atoi: parsing \"two\": invalid syntax"
        );
        assert_eq!(
            invalid(&[("max-size", "0")]),
            "max-size must be a positive number"
        );
        assert_eq!(invalid(&[("max-size", "ten")]), "invalid size: 'ten'");
        assert_eq!(
            invalid(&[("max-sise", "1m")]),
            "unknown log opt 'max-sise' for json-file log driver"
        );
        assert_eq!(
            invalid(&[("compress", "maybe")]),
            "strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
    }

    #[test]
    fn attributes_compression_and_other_drivers_are_refused_naming_the_option() {
        let flags = |h: &HostConfig| -> Vec<String> {
            unsupported(h).into_iter().map(|u| u.flag).collect()
        };
        let h = host(
            "json-file",
            &[("labels", "a"), ("tag", "{{.Name}}"), ("compress", "true")],
        );
        assert_eq!(
            flags(&h),
            ["--log-opt compress", "--log-opt labels", "--log-opt tag"]
        );
        assert!(flags(&host("json-file", &[("max-size", "1m")])).is_empty());
        assert_eq!(
            flags(&host("syslog", &[("syslog-address", "udp://x")])),
            ["--log-driver syslog"]
        );
    }

    #[test]
    fn a_driver_no_dockerd_has_is_refused_in_mobys_words() {
        let message = |h: &HostConfig| match registered(h) {
            Err(Refused::Invalid(m)) => m,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            message(&host("asdf", &[])),
            "logger: no log driver named 'asdf' is registered"
        );
        for known in ["", "json-file", "syslog", "none", "local"] {
            assert!(registered(&host(known, &[])).is_ok(), "{known}");
        }
    }
}
