//! The one place vic-machine writes its log lines, and the live line of a step under way.
//!
//! Every line is timestamped as VIC printed them (`Dec  5 2026 05:23:33.123Z INFO  …`). On
//! a terminal, a step under way also has a live line below the log (a spinner, its name,
//! the seconds so far), cleared before each log line and drawn again after it, so the log
//! itself reads the same on a terminal and in a file.

use std::io::Write;
use std::time::{Duration, Instant};

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];
/// Erases the terminal's current row and returns to its start.
pub(super) const CLEAR: &str = "\r\x1b[2K";

/// A step whose live line is shown.
struct Live {
    id: u64,
    what: String,
    started: Instant,
}

/// What is on the screen: the log so far and, on a terminal, the live line of the newest
/// step under way.
pub(super) struct Screen<W: Write> {
    out: W,
    /// Whether to draw live lines (a terminal that can erase a row).
    live: bool,
    /// Terminal columns; the live line is cut to fit in one row.
    width: usize,
    steps: Vec<Live>,
    next_id: u64,
    frame: usize,
    drawn: bool,
}

impl<W: Write> Screen<W> {
    pub(super) fn new(out: W, live: bool, width: usize) -> Self {
        Screen {
            out,
            live,
            width: width.max(20),
            steps: Vec::new(),
            next_id: 0,
            frame: 0,
            drawn: false,
        }
    }

    /// Writes one log line (`stamp` then `text`), keeping the live line below it.
    pub(super) fn line(&mut self, text: &str) {
        self.erase();
        // A closed stdout (a pipe whose reader left) is not a reason to fail the operation.
        let _ = writeln!(self.out, "{text}");
        self.draw();
    }

    /// A step starts: its live line is drawn at once. Returns its id for `end`.
    pub(super) fn begin(&mut self, what: &str, now: Instant) -> u64 {
        self.next_id += 1;
        self.steps.push(Live {
            id: self.next_id,
            what: what.to_string(),
            started: now,
        });
        self.erase();
        self.draw();
        self.next_id
    }

    /// A step ended: its live line goes.
    pub(super) fn end(&mut self, id: u64) {
        self.steps.retain(|s| s.id != id);
        self.erase();
        self.draw();
    }

    /// The live line moves on (spinner and seconds).
    pub(super) fn tick(&mut self) {
        self.frame = self.frame.wrapping_add(1);
        self.erase();
        self.draw();
    }

    fn erase(&mut self) {
        if self.drawn {
            let _ = write!(self.out, "{CLEAR}");
            self.drawn = false;
        }
    }

    fn draw(&mut self) {
        if self.live {
            if let Some(top) = self.steps.last() {
                let text = live_text(
                    SPINNER[self.frame % SPINNER.len()],
                    &top.what,
                    top.started.elapsed(),
                    self.width,
                );
                let _ = write!(self.out, "{text}");
                self.drawn = true;
            }
        }
        let _ = self.out.flush();
    }

    /// Whether a live line is drawn (so a step need not print that it goes on).
    pub(super) fn is_live(&self) -> bool {
        self.live
    }

    #[cfg(test)]
    pub(super) fn into_inner(self) -> W {
        self.out
    }
}

/// `⠋ Waiting for the Docker API to answer 12s`, cut to `width - 1` columns.
fn live_text(spin: char, what: &str, elapsed: Duration, width: usize) -> String {
    let secs = format!(" {}s", elapsed.as_secs());
    let room = width.saturating_sub(3 + secs.len() + 1);
    let what: String = if what.chars().count() > room {
        let cut: String = what.chars().take(room.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        what.to_string()
    };
    format!("{spin} {what}{secs}")
}

/// The terminal's width in columns, if stdout is one.
pub(super) fn terminal_width() -> Option<usize> {
    // SAFETY: TIOCGWINSZ fills the winsize it is given and nothing else.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::ioctl(libc::STDOUT_FILENO, libc::TIOCGWINSZ, &mut ws) };
    (rc == 0 && ws.ws_col > 0).then_some(ws.ws_col as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: Screen<Vec<u8>>) -> String {
        String::from_utf8(s.into_inner()).unwrap()
    }

    #[test]
    fn without_a_terminal_only_log_lines_are_written() {
        let mut s = Screen::new(Vec::new(), false, 80);
        let id = s.begin("Waiting", Instant::now());
        s.line("INFO  one");
        s.tick();
        s.end(id);
        s.line("INFO  two");
        assert_eq!(text(s), "INFO  one\nINFO  two\n");
    }

    #[test]
    fn on_a_terminal_the_live_line_stays_below_the_log() {
        let mut s = Screen::new(Vec::new(), true, 80);
        let id = s.begin("Waiting for the Docker API", Instant::now());
        s.line("INFO  one");
        s.tick();
        s.end(id);
        s.line("INFO  two");
        let want = [
            "⠋ Waiting for the Docker API 0s",
            CLEAR,
            "INFO  one\n",
            "⠋ Waiting for the Docker API 0s",
            CLEAR,
            "⠙ Waiting for the Docker API 0s",
            CLEAR,
            "INFO  two\n",
        ]
        .concat();
        assert_eq!(text(s), want);
    }

    #[test]
    fn the_newest_step_is_shown_and_the_one_under_it_comes_back() {
        let mut s = Screen::new(Vec::new(), true, 80);
        let outer = s.begin("Outer", Instant::now());
        let inner = s.begin("Inner", Instant::now());
        s.end(inner);
        s.end(outer);
        let want = [
            "⠋ Outer 0s",
            CLEAR,
            "⠋ Inner 0s",
            CLEAR,
            "⠋ Outer 0s",
            CLEAR,
        ]
        .concat();
        assert_eq!(text(s), want);
    }

    #[test]
    fn a_long_step_name_is_cut_to_one_row() {
        let long = "x".repeat(200);
        let t = live_text('⠋', &long, Duration::from_secs(75), 40);
        assert!(t.chars().count() < 40, "{t}");
        assert!(t.ends_with("… 75s"), "{t}");
    }
}
