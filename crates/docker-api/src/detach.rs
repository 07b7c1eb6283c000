//! Detach keys: the key sequence that ends an attach and leaves the container running, as
//! Docker's `--detach-keys` (`ctrl-p,ctrl-q` when none is given). What the client types is
//! scanned as it arrives: bytes that begin the sequence are held back until the sequence
//! completes (the client is detached, and they never reach the container) or breaks off (they
//! go on, in order).

/// Docker's default sequence.
pub const DEFAULT: &str = "ctrl-p,ctrl-q";

/// The bytes of a `--detach-keys` value: comma-separated keys, each one character or
/// `ctrl-X` (X one of `@`, `a`–`z`, `[`, `\`, `]`, `^`, `_`), or `DEL`.
pub fn parse(keys: &str) -> Result<Vec<u8>, String> {
    let bad = || format!("Invalid detach keys ({keys}) provided");
    let mut out = Vec::new();
    for key in keys.split(',') {
        let byte = match key.as_bytes() {
            [c] => *c,
            _ if key == "DEL" => 127,
            _ => {
                let c = key.strip_prefix("ctrl-").ok_or_else(bad)?;
                match c.as_bytes() {
                    [c @ (b'a'..=b'z' | b'@' | b'[' | b'\\' | b']' | b'^' | b'_')] => {
                        c.to_ascii_uppercase() & 0x1f
                    }
                    _ => return Err(bad()),
                }
            }
        };
        out.push(byte);
    }
    match out.is_empty() {
        true => Err(bad()),
        false => Ok(out),
    }
}

/// Watches a client's input for the sequence.
#[derive(Debug)]
pub struct Scanner {
    keys: Vec<u8>,
    matched: usize,
}

impl Scanner {
    pub fn new(keys: Vec<u8>) -> Self {
        Scanner { keys, matched: 0 }
    }

    /// What of `data` goes on to the container, and whether the sequence completed (what
    /// followed it in `data` is dropped: the client is gone).
    pub fn feed(&mut self, data: &[u8]) -> (Vec<u8>, bool) {
        let mut out = Vec::with_capacity(data.len());
        for &b in data {
            if b == self.keys[self.matched] {
                self.matched += 1;
                if self.matched == self.keys.len() {
                    return (out, true);
                }
                continue;
            }
            // The sequence broke off: what was held goes on, and this byte may begin it anew.
            out.extend_from_slice(&self.keys[..self.matched]);
            self.matched = 0;
            if b == self.keys[0] {
                self.matched = 1;
                if self.keys.len() == 1 {
                    return (out, true);
                }
            } else {
                out.push(b);
            }
        }
        (out, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_read_as_docker_reads_them() {
        assert_eq!(parse(DEFAULT).unwrap(), [16, 17]);
        assert_eq!(parse("ctrl-x").unwrap(), [24]);
        assert_eq!(parse("a,ctrl-@,ctrl-_,DEL").unwrap(), [b'a', 0, 31, 127]);
        for bad in ["", "ctrl-", "ctrl-1", "ctrl-ab", "shift-a", "a,,b"] {
            assert_eq!(
                parse(bad).unwrap_err(),
                format!("Invalid detach keys ({bad}) provided")
            );
        }
    }

    #[test]
    fn the_sequence_detaches_and_a_broken_one_goes_through() {
        let mut s = Scanner::new(parse(DEFAULT).unwrap());
        assert_eq!(s.feed(b"hello\x10"), (b"hello".to_vec(), false));
        // Broken off: the held ctrl-p goes on, in order.
        assert_eq!(s.feed(b"x"), (b"\x10x".to_vec(), false));
        assert_eq!(s.feed(b"\x10\x10"), (b"\x10".to_vec(), false));
        assert_eq!(s.feed(b"\x11after"), (Vec::new(), true));
        let mut one = Scanner::new(parse("ctrl-x").unwrap());
        assert_eq!(one.feed(b"ab\x18cd"), (b"ab".to_vec(), true));
    }
}
