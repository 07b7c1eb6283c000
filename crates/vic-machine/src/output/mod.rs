//! What vic-machine prints, as VIC prints it: timestamped `INFO`/`WARN`/`ERROR` lines, the
//! progress of steps that take a while, and Go-style durations.
//!
//! A step ([`step`]) prints its name when it starts and, if it took a second or more, the
//! time it took when it ends. On a terminal a live line shows the step under way and its
//! seconds so far; without one (a pipe, a file, CI) every 30 s of a step adds a plain line,
//! so a long wait is never silent.

mod screen;

use std::io::{IsTerminal, Stdout};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use screen::Screen;

/// How often the live line moves, and how often a step without one says it is still going.
const TICK: Duration = Duration::from_millis(100);
const STILL: Duration = Duration::from_secs(30);
/// Steps shorter than this print no end line.
const NOTABLE: Duration = Duration::from_secs(1);

fn screen() -> MutexGuard<'static, Screen<Stdout>> {
    static SCREEN: OnceLock<Mutex<Screen<Stdout>>> = OnceLock::new();
    SCREEN
        .get_or_init(|| {
            let out = std::io::stdout();
            let dumb = std::env::var("TERM").map_or(true, |t| t == "dumb");
            let live = out.is_terminal() && !dumb;
            // A terminal that does not know its size (a bare pseudo-terminal) is 80 wide.
            let width = screen::terminal_width()
                .or_else(|| std::env::var("COLUMNS").ok()?.parse().ok())
                .unwrap_or(80);
            Mutex::new(Screen::new(out, live, width))
        })
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// VIC's timestamp: Go's `Jan _2 2006 15:04:05.000Z07:00`, in local time.
fn stamp() -> String {
    let now = chrono::Local::now();
    let zone = match now.offset().local_minus_utc() {
        0 => "Z".to_string(),
        _ => now.format("%:z").to_string(),
    };
    format!("{}{zone}", now.format("%b %e %Y %H:%M:%S%.3f"))
}

fn log(level: &str, msg: &str) {
    let stamp = stamp();
    let mut s = screen();
    for line in msg.split('\n') {
        s.line(&format!("{stamp} {level:<5} {line}"));
    }
}

pub(crate) fn info(msg: impl AsRef<str>) {
    log("INFO", msg.as_ref());
}

pub(crate) fn warn(msg: impl AsRef<str>) {
    log("WARN", msg.as_ref());
}

pub(crate) fn error(msg: impl AsRef<str>) {
    log("ERROR", msg.as_ref());
}

/// A line printed as it is, without stamp or level (`DOCKER_HOST=…` for a shell to read).
pub(crate) fn raw(line: impl AsRef<str>) {
    screen().line(line.as_ref());
}

/// A step under way; see the module's doc. Ending it with [`Step::done`] prints how long it
/// took (if a second or more); dropping it (an error on the way) only clears its live line,
/// and the error says the rest.
#[must_use = "a step ends when it is dropped"]
pub(crate) struct Step {
    what: String,
    id: u64,
    started: Instant,
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<JoinHandle<()>>,
}

/// Starts a step: prints `what` and, on a terminal, shows it live until it ends.
pub(crate) fn step(what: impl Into<String>) -> Step {
    let what = what.into();
    info(&what);
    let started = Instant::now();
    let id = screen().begin(&what, started);
    let (stop, stopped) = mpsc::channel();
    let name = what.clone();
    let ticker = std::thread::Builder::new()
        .name("progress".into())
        .spawn(move || tick(&name, started, &stopped))
        .ok();
    Step {
        what,
        id,
        started,
        stop: Some(stop),
        ticker,
    }
}

/// Moves the live line every `TICK`, and says every `STILL` that the step goes on, until
/// the step ends (its sender is dropped).
fn tick(what: &str, started: Instant, stopped: &mpsc::Receiver<()>) {
    let mut next_still = started + STILL;
    while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(TICK) {
        let live = {
            let mut s = screen();
            s.tick();
            s.is_live()
        };
        if !live && Instant::now() >= next_still {
            info(format!("{what}: {} so far", go_duration(started.elapsed())));
            next_still += STILL;
        }
    }
}

impl Step {
    /// The step succeeded.
    pub(crate) fn done(mut self) {
        self.finish();
        if let Some(line) = end_line(&self.what, self.started.elapsed()) {
            info(line);
        }
    }

    fn finish(&mut self) {
        if let Some(stop) = self.stop.take() {
            drop(stop);
            if let Some(t) = self.ticker.take() {
                let _ = t.join();
            }
            screen().end(self.id);
        }
    }
}

impl Drop for Step {
    fn drop(&mut self) {
        self.finish();
    }
}

/// What a step that succeeded prints at its end: how long it took, if that is notable.
fn end_line(what: &str, took: Duration) -> Option<String> {
    (took >= NOTABLE).then(|| format!("{what}: done in {}", go_duration(round(took))))
}

/// A duration to a tenth of a second, as a step's end line shows it.
fn round(d: Duration) -> Duration {
    Duration::from_millis((d.as_millis() as u64 + 50) / 100 * 100)
}

/// A duration as VIC (Go) prints one: `3m0s`, `90s` → `1m30s`, `500ms`.
pub fn go_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    let (h, m, s) = (s / 3600, s / 60 % 60, s % 60);
    let frac = d.subsec_millis();
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        format!("{}s", format!("{s}.{frac:03}").trim_end_matches('0'))
    };
    match (h, m) {
        (0, 0) => secs,
        (0, m) => format!("{m}m{secs}"),
        (h, m) => format!("{h}h{m}m{secs}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_read_as_vics() {
        // `Dec  5 2026 05:23:33.123Z` (or an offset such as `+01:00` for the zone).
        let s = stamp();
        let (date, rest) = s.split_at(11);
        assert_eq!(date.len(), 11, "{s}");
        assert!(date.split_whitespace().count() == 3, "{s}");
        assert_eq!(&rest[..1], " ", "{s}");
        let time = &rest[1..13];
        assert!(
            time.chars().enumerate().all(|(i, c)| match i {
                2 | 5 => c == ':',
                8 => c == '.',
                _ => c.is_ascii_digit(),
            }),
            "{s}"
        );
        let zone = &rest[13..];
        assert!(zone == "Z" || zone.len() == 6, "{s}");
    }

    #[test]
    fn a_step_says_how_long_it_took_from_a_second_on() {
        assert_eq!(end_line("Waiting", Duration::from_millis(999)), None);
        assert_eq!(
            end_line("Waiting", Duration::from_millis(1_040)).as_deref(),
            Some("Waiting: done in 1s")
        );
        assert_eq!(
            end_line("Uploading", Duration::from_millis(75_460)).as_deref(),
            Some("Uploading: done in 1m15.5s")
        );
    }

    #[test]
    fn a_step_s_time_is_shown_to_a_tenth() {
        assert_eq!(go_duration(round(Duration::from_millis(3_249))), "3.2s");
        assert_eq!(go_duration(round(Duration::from_millis(1_000))), "1s");
        assert_eq!(go_duration(round(Duration::from_millis(61_960))), "1m2s");
    }

    #[test]
    fn durations_print_as_vic_prints_them() {
        assert_eq!(go_duration(Duration::from_secs(180)), "3m0s");
        assert_eq!(go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(go_duration(Duration::from_secs(1)), "1s");
        assert_eq!(go_duration(Duration::from_millis(1)), "1ms");
        assert_eq!(go_duration(Duration::from_secs(3700)), "1h1m40s");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }
}
