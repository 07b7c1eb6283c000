//! Signal names and numbers as Docker accepts them ("KILL", "SIGKILL", "9").

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", 1),
    ("INT", 2),
    ("QUIT", 3),
    ("ILL", 4),
    ("TRAP", 5),
    ("ABRT", 6),
    ("IOT", 6),
    ("BUS", 7),
    ("FPE", 8),
    ("KILL", 9),
    ("USR1", 10),
    ("SEGV", 11),
    ("USR2", 12),
    ("PIPE", 13),
    ("ALRM", 14),
    ("TERM", 15),
    ("STKFLT", 16),
    ("CHLD", 17),
    ("CONT", 18),
    ("STOP", 19),
    ("TSTP", 20),
    ("TTIN", 21),
    ("TTOU", 22),
    ("URG", 23),
    ("XCPU", 24),
    ("XFSZ", 25),
    ("VTALRM", 26),
    ("PROF", 27),
    ("WINCH", 28),
    ("IO", 29),
    ("POLL", 29),
    ("PWR", 30),
    ("SYS", 31),
];

/// Parses a signal as Docker does; `None` for anything it would call an invalid signal.
pub fn parse_signal(s: &str) -> Option<i32> {
    let s = s.trim();
    if let Ok(n) = s.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN+") {
        return rest
            .parse::<i32>()
            .ok()
            .filter(|n| (0..=30).contains(n))
            .map(|n| 34 + n);
    }
    SIGNALS.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
}

#[cfg(test)]
mod tests {
    use super::parse_signal;

    #[test]
    fn docker_signal_spellings() {
        assert_eq!(parse_signal("KILL"), Some(9));
        assert_eq!(parse_signal("SIGKILL"), Some(9));
        assert_eq!(parse_signal("sigusr1"), Some(10));
        assert_eq!(parse_signal("15"), Some(15));
        assert_eq!(parse_signal("RTMIN+1"), Some(35));
        assert_eq!(parse_signal("NOPE"), None);
        assert_eq!(parse_signal("0"), None);
        assert_eq!(parse_signal("65"), None);
    }
}
