//! `GET /containers/{id}/top?ps_args=` (`docker top`): the container's processes, which its
//! guest lists from its own `/proc`, shown as `ps` shows them: `-ef` (the default), `aux`,
//! or `-o` with these of `ps`'s field names: `pid`, `ppid`, `user`, `uid`, `comm`, `args`,
//! `cmd`, `command`, `rss`, `vsz`, `stat`, `time`, `tty`. Other options are refused in words.

use axum::extract::{Path, State};
use axum::Json;
use chrono::{DateTime, TimeZone, Utc};
use portlayer::{GuestProcess, Processes};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::query::DockerQuery;
use crate::{ApiError, ApiResult, AppState};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TopQuery {
    ps_args: Option<String>,
}

/// GET /containers/{id}/top
pub async fn top(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<TopQuery>,
) -> ApiResult<Json<Value>> {
    let fields = columns(q.ps_args.as_deref().unwrap_or("-ef"))?;
    let procs = st.containers.top(&id).await?;
    let now = Utc::now();
    let titles: Vec<&str> = fields.iter().map(|f| title(f)).collect();
    let rows: Vec<Vec<String>> = procs
        .list
        .iter()
        .map(|p| fields.iter().map(|f| cell(f, p, &procs, now)).collect())
        .collect();
    Ok(Json(json!({ "Titles": titles, "Processes": rows })))
}

/// The columns `ps ARGS` shows.
fn columns(args: &str) -> ApiResult<Vec<String>> {
    let words: Vec<&str> = args.split_whitespace().collect();
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    match words.as_slice() {
        [] | ["-ef"] | ["-e", "-f"] | ["-f"] => Ok(own(&["uid", "pid", "ppid", "c", "stime", "tty", "time", "cmd"])),
        ["aux"] | ["-aux"] | ["au"] | ["ax"] => Ok(own(&[
            "user", "pid", "%cpu", "%mem", "vsz", "rss", "tty", "stat", "start", "bsdtime", "args",
        ])),
        ["-o", list] | ["-eo", list] => {
            let fields: Vec<String> = list.split(',').map(str::to_string).collect();
            let known = ["pid", "ppid", "user", "uid", "comm", "args", "cmd", "command", "rss", "vsz", "stat", "time", "tty"];
            match fields.iter().find(|f| !known.contains(&f.as_str())) {
                Some(f) => Err(ApiError::bad_request(format!(
                    "ps field {f} is not shown by vic: use {}",
                    known.join(", ")
                ))),
                None => Ok(fields),
            }
        }
        _ => Err(ApiError::bad_request(format!(
            "ps options {args:?} are not supported by vic: the processes are read in the container's VM and shown as ps -ef, ps aux or ps -o FIELDS shows them"
        ))),
    }
}

fn title(field: &str) -> &'static str {
    match field {
        "uid" => "UID",
        "pid" => "PID",
        "ppid" => "PPID",
        "c" => "C",
        "stime" => "STIME",
        "tty" => "TTY",
        "time" | "bsdtime" => "TIME",
        "cmd" => "CMD",
        "user" => "USER",
        "%cpu" => "%CPU",
        "%mem" => "%MEM",
        "vsz" => "VSZ",
        "rss" => "RSS",
        "stat" => "STAT",
        "start" => "START",
        _ => "COMMAND",
    }
}

fn cell(field: &str, p: &GuestProcess, all: &Processes, now: DateTime<Utc>) -> String {
    let hz = all.hz.max(1);
    let cpu_secs = p.ticks / hz;
    let started = Utc
        .timestamp_opt((all.boot_unix + p.start_ticks / hz) as i64, 0)
        .single()
        .unwrap_or(now);
    let alive = (now - started).num_milliseconds().max(1) as f64 / 1000.0;
    let cpu_pct = (p.ticks as f64 / hz as f64) / alive * 100.0;
    let command = if p.args.is_empty() {
        format!("[{}]", p.comm)
    } else {
        p.args.join(" ")
    };
    match field {
        "uid" | "user" => p.user.clone(),
        "pid" => p.pid.to_string(),
        "ppid" => p.ppid.to_string(),
        "c" => format!("{}", cpu_pct as u64),
        "%cpu" => format!("{cpu_pct:.1}"),
        "%mem" => format!(
            "{:.1}",
            p.rss_kib as f64 * 100.0 / all.memory_kib.max(1) as f64
        ),
        "stime" | "start" => started.format("%H:%M").to_string(),
        "tty" => p.tty.clone(),
        "time" => format!(
            "{:02}:{:02}:{:02}",
            cpu_secs / 3600,
            cpu_secs / 60 % 60,
            cpu_secs % 60
        ),
        "bsdtime" => format!("{}:{:02}", cpu_secs / 60, cpu_secs % 60),
        "vsz" => p.vsize_kib.to_string(),
        "rss" => p.rss_kib.to_string(),
        "stat" => p.state.clone(),
        "comm" => p.comm.clone(),
        _ => command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ps_forms_become_columns_and_others_are_refused() {
        assert_eq!(columns("").unwrap()[7], "cmd");
        assert_eq!(columns("aux").unwrap()[0], "user");
        assert_eq!(columns("-o pid,comm").unwrap(), ["pid", "comm"]);
        assert!(columns("-o pid,etime")
            .unwrap_err()
            .message
            .contains("etime"));
        assert!(columns("-L")
            .unwrap_err()
            .message
            .contains("not supported by vic"));
    }

    #[test]
    fn a_process_is_shown_as_ps_shows_it() {
        let p = GuestProcess {
            pid: 7,
            ppid: 1,
            uid: 0,
            user: "root".into(),
            state: "S".into(),
            ticks: 150,
            start_ticks: 100,
            rss_kib: 1024,
            vsize_kib: 4096,
            tty: "?".into(),
            comm: "sleep".into(),
            args: vec!["sleep".into(), "600".into()],
        };
        let all = Processes {
            list: vec![p.clone()],
            boot_unix: 1_700_000_000,
            hz: 100,
            memory_kib: 2048,
        };
        let now = Utc.timestamp_opt(1_700_000_011, 0).unwrap();
        let row: Vec<String> = columns("")
            .unwrap()
            .iter()
            .map(|f| cell(f, &p, &all, now))
            .collect();
        assert_eq!(
            row,
            [
                "root",
                "7",
                "1",
                "15",
                "22:13",
                "?",
                "00:00:01",
                "sleep 600"
            ]
        );
        assert_eq!(cell("%mem", &p, &all, now), "50.0");
    }
}
