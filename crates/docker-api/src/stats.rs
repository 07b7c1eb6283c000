//! `GET /containers/{id}/stats?stream=&one-shot=` (`docker stats`): the counters the
//! container's guest reads of its own VM, once a second, as dockerd's JSON: CPU time over
//! the VM's vCPUs against all of their time (so the CLI's percentage is of one vCPU, as of
//! one host CPU with dockerd), the guest's memory in use (page cache it may drop shown apart)
//! against the VM's memory, the container's processes, traffic per interface and I/O per
//! disk. A stopped or paused container reads as zeros, as with dockerd.

use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use chrono::{DateTime, Utc};
use portlayer::{ContainerRecord, ContainerStats};
use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::query::DockerQuery;
use crate::{ApiResult, AppState};

/// How often a stream samples.
const INTERVAL: Duration = Duration::from_secs(1);

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StatsQuery {
    stream: bool,
    #[serde(rename = "one-shot")]
    one_shot: bool,
}

impl Default for StatsQuery {
    fn default() -> Self {
        StatsQuery {
            stream: true,
            one_shot: false,
        }
    }
}

/// One sample: when it was read and what it says.
#[derive(Clone)]
struct Sample {
    read: DateTime<Utc>,
    stats: Option<ContainerStats>,
}

async fn sample(st: &AppState, id: &str) -> ApiResult<(ContainerRecord, Sample)> {
    let (rec, stats) = st.containers.stats(id).await?;
    let read = Utc::now();
    Ok((rec, Sample { read, stats }))
}

fn time(t: Option<DateTime<Utc>>) -> String {
    t.map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true))
        .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string())
}

fn cpu(s: Option<&ContainerStats>) -> Value {
    let throttling = json!({ "periods": 0, "throttled_periods": 0, "throttled_time": 0 });
    match s {
        None => json!({
            "cpu_usage": { "total_usage": 0, "usage_in_kernelmode": 0, "usage_in_usermode": 0 },
            "throttling_data": throttling,
        }),
        Some(s) => json!({
            "cpu_usage": {
                "total_usage": s.cpu_busy_ns,
                "percpu_usage": s.per_cpu_busy_ns,
                "usage_in_kernelmode": s.cpu_system_ns,
                "usage_in_usermode": s.cpu_user_ns,
            },
            "system_cpu_usage": s.cpu_total_ns,
            "online_cpus": s.online_cpus,
            "throttling_data": throttling,
        }),
    }
}

/// Docker's stats JSON for `now`, with `pre` as the sample before it.
fn render(rec: &ContainerRecord, now: &Sample, pre: Option<&Sample>) -> Value {
    let s = now.stats.as_ref();
    let memory = match s {
        None => json!({}),
        Some(s) => json!({
            "usage": s.mem_total.saturating_sub(s.mem_free),
            "stats": {
                "cache": s.mem_cached,
                "total_inactive_file": s.mem_inactive_file,
                "inactive_file": s.mem_inactive_file,
            },
            "limit": s.mem_total,
        }),
    };
    let mut v = json!({
        "read": time(s.map(|_| now.read)),
        "preread": time(pre.and_then(|p| p.stats.as_ref().map(|_| p.read))),
        "pids_stats": s.map_or(json!({}), |s| json!({ "current": s.pids })),
        "blkio_stats": {
            "io_service_bytes_recursive": s.map(|s| {
                s.disks.iter().flat_map(|d| [
                    json!({ "major": d.major, "minor": d.minor, "op": "read", "value": d.read_bytes }),
                    json!({ "major": d.major, "minor": d.minor, "op": "write", "value": d.write_bytes }),
                ]).collect::<Vec<_>>()
            }),
            "io_serviced_recursive": s.map(|s| {
                s.disks.iter().flat_map(|d| [
                    json!({ "major": d.major, "minor": d.minor, "op": "read", "value": d.reads }),
                    json!({ "major": d.major, "minor": d.minor, "op": "write", "value": d.writes }),
                ]).collect::<Vec<_>>()
            }),
        },
        "num_procs": 0,
        "storage_stats": {},
        "cpu_stats": cpu(s),
        "precpu_stats": cpu(pre.and_then(|p| p.stats.as_ref())),
        "memory_stats": memory,
        "name": format!("/{}", rec.spec.name),
        "id": rec.id,
    });
    if let Some(s) = s {
        let nets: Map<String, Value> = (s.networks.iter())
            .map(|n| {
                let counters = json!({
                    "rx_bytes": n.rx_bytes, "rx_packets": n.rx_packets,
                    "rx_errors": n.rx_errors, "rx_dropped": n.rx_dropped,
                    "tx_bytes": n.tx_bytes, "tx_packets": n.tx_packets,
                    "tx_errors": n.tx_errors, "tx_dropped": n.tx_dropped,
                });
                (n.name.clone(), counters)
            })
            .collect();
        v["networks"] = Value::Object(nets);
    }
    v
}

fn line(v: &Value) -> Bytes {
    let mut out = serde_json::to_vec(v).unwrap_or_default();
    out.push(b'\n');
    Bytes::from(out)
}

/// GET /containers/{id}/stats?stream=&one-shot=
pub async fn stats(
    State(st): State<AppState>,
    Path(id): Path<String>,
    DockerQuery(q): DockerQuery<StatsQuery>,
) -> ApiResult<Response> {
    let (rec, first) = sample(&st, &id).await?;
    let json = HeaderValue::from_static("application/json");
    if !q.stream {
        let body = if q.one_shot {
            render(&rec, &first, None)
        } else {
            // The CLI's percentages need two samples.
            tokio::time::sleep(INTERVAL).await;
            let (rec, second) = sample(&st, &id).await?;
            render(&rec, &second, Some(&first))
        };
        return Ok(([(header::CONTENT_TYPE, json)], Body::from(line(&body))).into_response());
    }
    let opening = line(&render(&rec, &first, None));
    let rest = futures_util::stream::unfold(Some(first), move |pre| {
        let (st, id) = (st.clone(), id.clone());
        async move {
            let pre = pre?;
            tokio::time::sleep(INTERVAL).await;
            match sample(&st, &id).await {
                Ok((rec, now)) => {
                    let bytes = line(&render(&rec, &now, Some(&pre)));
                    Some((Ok::<_, std::io::Error>(bytes), Some(now)))
                }
                // Removed, most likely: the stream ends.
                Err(_) => None,
            }
        }
    });
    let stream = futures_util::StreamExt::chain(
        futures_util::stream::once(async move { Ok(opening) }),
        rest,
    );
    Ok(([(header::CONTENT_TYPE, json)], Body::from_stream(stream)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;
    use portlayer::{DiskStats, NetStats};

    #[test]
    fn a_sample_reads_as_dockerd_writes_it() {
        let rec = ContainerRecord {
            id: "abc".into(),
            created: Utc::now(),
            spec: Default::default(),
            state: Default::default(),
        };
        let stats = ContainerStats {
            online_cpus: 2,
            cpu_total_ns: 4_000,
            cpu_busy_ns: 1_000,
            mem_total: 1000,
            mem_free: 300,
            mem_inactive_file: 100,
            pids: 3,
            networks: vec![NetStats {
                name: "eth0".into(),
                rx_bytes: 5,
                ..Default::default()
            }],
            disks: vec![DiskStats {
                major: 254,
                write_bytes: 512,
                ..Default::default()
            }],
            ..Default::default()
        };
        let now = Sample {
            read: Utc::now(),
            stats: Some(stats),
        };
        let v = render(&rec, &now, None);
        assert_eq!(v["cpu_stats"]["cpu_usage"]["total_usage"], 1000);
        assert_eq!(v["cpu_stats"]["system_cpu_usage"], 4000);
        assert_eq!(v["cpu_stats"]["online_cpus"], 2);
        assert_eq!(v["memory_stats"]["usage"], 700);
        assert_eq!(v["memory_stats"]["limit"], 1000);
        assert_eq!(v["memory_stats"]["stats"]["total_inactive_file"], 100);
        assert_eq!(v["pids_stats"]["current"], 3);
        assert_eq!(v["networks"]["eth0"]["rx_bytes"], 5);
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][1]["op"],
            "write"
        );
        assert_eq!(
            v["blkio_stats"]["io_service_bytes_recursive"][1]["value"],
            512
        );
        assert_eq!(v["preread"], "0001-01-01T00:00:00Z");
        let stopped = render(
            &rec,
            &Sample {
                read: Utc::now(),
                stats: None,
            },
            None,
        );
        assert_eq!(stopped["read"], "0001-01-01T00:00:00Z");
        assert_eq!(stopped["memory_stats"], json!({}));
        assert_eq!(stopped["cpu_stats"]["cpu_usage"]["total_usage"], 0);
    }
}
