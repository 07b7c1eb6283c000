//! Go's `path.Match`, which Docker's `reference` filter applies to image names: `*` matches
//! any run of characters but `/`, `?` one character but `/`, `[...]` a class (`[^...]`
//! negated, `a-z` ranges), `\` escapes the next character.
//!
//! The pattern comes from an API client, so the match is iterative and bounded: the pattern is
//! cut into chunks at its stars, and each chunk is tried at the positions its star may skip
//! (never past a `/`), leftmost first, without going back to earlier stars: Go's algorithm,
//! at most (pattern length × name length) steps, and no recursion. Patterns longer than
//! [`MAX_PATTERN_LEN`] are refused before matching.

/// The longest pattern matched. A reference is at most 255 characters of name and 128 of
/// tag; this leaves room for escapes and classes.
pub const MAX_PATTERN_LEN: usize = 1024;

/// Why a pattern cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    /// A malformed pattern (Go's `path.ErrBadPattern`).
    #[error("syntax error in pattern")]
    Syntax,
    /// A pattern longer than [`MAX_PATTERN_LEN`].
    #[error("pattern is longer than {MAX_PATTERN_LEN} characters")]
    TooLong,
}

/// Whether `name` matches the shell pattern `pattern`, as Go's `path.Match` decides.
pub fn path_match(pattern: &str, name: &str) -> Result<bool, PatternError> {
    if pattern.chars().count() > MAX_PATTERN_LEN {
        return Err(PatternError::TooLong);
    }
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    let (mut pat, mut name) = (&pattern[..], &name[..]);
    'pattern: while !pat.is_empty() {
        let (star, chunk, rest) = scan_chunk(pat);
        pat = rest;
        if star && chunk.is_empty() {
            // A trailing star matches the rest unless it holds a '/'.
            return Ok(!name.contains(&'/'));
        }
        // At the current position first; a chunk that ends the pattern must end the name.
        if let Some(t) = match_chunk(chunk, name)? {
            if t.is_empty() || !pat.is_empty() {
                name = t;
                continue;
            }
        }
        if star {
            // Skipping 1, 2, … characters, never a '/'.
            for i in 0..name.len() {
                if name[i] == '/' {
                    break;
                }
                if let Some(t) = match_chunk(chunk, &name[i + 1..])? {
                    if pat.is_empty() && !t.is_empty() {
                        continue;
                    }
                    name = t;
                    continue 'pattern;
                }
            }
        }
        // No match: the rest of the pattern must still be well formed.
        while !pat.is_empty() {
            let (_, chunk, rest) = scan_chunk(pat);
            pat = rest;
            match_chunk(chunk, &[])?;
        }
        return Ok(false);
    }
    Ok(name.is_empty())
}

/// Splits off the leading stars (whether there were any), the chunk up to the next star
/// outside a class, and the rest.
fn scan_chunk(pattern: &[char]) -> (bool, &[char], &[char]) {
    let mut p = pattern;
    let mut star = false;
    while let Some(('*', rest)) = p.split_first() {
        p = rest;
        star = true;
    }
    let mut in_range = false;
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '\\' if i + 1 < p.len() => i += 1,
            '[' => in_range = true,
            ']' => in_range = false,
            '*' if !in_range => break,
            _ => {}
        }
        i += 1;
    }
    (star, &p[..i], &p[i..])
}

/// Matches a star-free chunk at the start of `s`: what is left of `s` on a match, None
/// otherwise. After a mismatch the chunk is still read to the end, to report a bad pattern.
fn match_chunk<'a>(chunk: &[char], s: &'a [char]) -> Result<Option<&'a [char]>, PatternError> {
    let mut chunk = chunk;
    let mut s = s;
    let mut failed = false;
    while let Some((&c, rest)) = chunk.split_first() {
        if !failed && s.is_empty() {
            failed = true;
        }
        match c {
            '[' => {
                let r = if failed {
                    None
                } else {
                    let r = s[0];
                    s = &s[1..];
                    Some(r)
                };
                chunk = rest;
                let negated = chunk.first() == Some(&'^');
                if negated {
                    chunk = &chunk[1..];
                }
                let mut matched = false;
                let mut ranges = 0;
                loop {
                    if chunk.first() == Some(&']') && ranges > 0 {
                        chunk = &chunk[1..];
                        break;
                    }
                    let (lo, rest) = class_char(chunk)?;
                    chunk = rest;
                    let mut hi = lo;
                    if chunk.first() == Some(&'-') {
                        let (h, rest) = class_char(&chunk[1..])?;
                        hi = h;
                        chunk = rest;
                    }
                    if r.is_some_and(|r| lo <= r && r <= hi) {
                        matched = true;
                    }
                    ranges += 1;
                }
                if matched == negated {
                    failed = true;
                }
            }
            '?' => {
                if !failed {
                    if s[0] == '/' {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = rest;
            }
            _ => {
                let (lit, rest) = if c == '\\' {
                    match rest.split_first() {
                        Some((&lit, rest)) => (lit, rest),
                        None => return Err(PatternError::Syntax),
                    }
                } else {
                    (c, rest)
                };
                if !failed {
                    if s[0] != lit {
                        failed = true;
                    }
                    s = &s[1..];
                }
                chunk = rest;
            }
        }
    }
    Ok((!failed).then_some(s))
}

/// One (possibly escaped) character of a class; a class must go on after it.
fn class_char(chunk: &[char]) -> Result<(char, &[char]), PatternError> {
    let chunk = match chunk.first() {
        None | Some('-') | Some(']') => return Err(PatternError::Syntax),
        Some('\\') => &chunk[1..],
        Some(_) => chunk,
    };
    match chunk.split_first() {
        Some((&c, rest)) if !rest.is_empty() => Ok((c, rest)),
        _ => Err(PatternError::Syntax),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn m(p: &str, n: &str) -> bool {
        path_match(p, n).unwrap()
    }

    /// Go's own `path.Match` tests (src/path/match_test.go), as (pattern, name, result).
    #[test]
    fn matches_as_go_path_match_does() {
        let cases: &[(&str, &str, Result<bool, PatternError>)] = &[
            ("abc", "abc", Ok(true)),
            ("*", "abc", Ok(true)),
            ("*c", "abc", Ok(true)),
            ("a*", "a", Ok(true)),
            ("a*", "abc", Ok(true)),
            ("a*", "ab/c", Ok(false)),
            ("a*/b", "abc/b", Ok(true)),
            ("a*/b", "a/c/b", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxe/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/f", Ok(true)),
            ("a*b*c*d*e*/f", "axbxcxdxe/xxx/f", Ok(false)),
            ("a*b*c*d*e*/f", "axbxcxdxexxx/fff", Ok(false)),
            ("a*b?c*x", "abxbbxdbxebxczzx", Ok(true)),
            ("a*b?c*x", "abxbbxdbxebxczzy", Ok(false)),
            ("ab[c]", "abc", Ok(true)),
            ("ab[b-d]", "abc", Ok(true)),
            ("ab[e-g]", "abc", Ok(false)),
            ("ab[^c]", "abc", Ok(false)),
            ("ab[^b-d]", "abc", Ok(false)),
            ("ab[^e-g]", "abc", Ok(true)),
            ("a\\*b", "a*b", Ok(true)),
            ("a\\*b", "ab", Ok(false)),
            ("a?b", "a☺b", Ok(true)),
            ("a[^a]b", "a☺b", Ok(true)),
            ("a???b", "a☺b", Ok(false)),
            ("a[^a][^a][^a]b", "a☺b", Ok(false)),
            ("[a-ζ]*", "α", Ok(true)),
            ("*[a-ζ]", "A", Ok(false)),
            ("a?b", "a/b", Ok(false)),
            ("a*b", "a/b", Ok(false)),
            ("[\\]a]", "]", Ok(true)),
            ("[\\-]", "-", Ok(true)),
            ("[x\\-]", "x", Ok(true)),
            ("[x\\-]", "-", Ok(true)),
            ("[x\\-]", "z", Ok(false)),
            ("[\\-x]", "x", Ok(true)),
            ("[\\-x]", "-", Ok(true)),
            ("[\\-x]", "a", Ok(false)),
            ("[]a]", "]", Err(PatternError::Syntax)),
            ("[-]", "-", Err(PatternError::Syntax)),
            ("[x-]", "x", Err(PatternError::Syntax)),
            ("[x-]", "-", Err(PatternError::Syntax)),
            ("[x-]", "z", Err(PatternError::Syntax)),
            ("[-x]", "x", Err(PatternError::Syntax)),
            ("[-x]", "-", Err(PatternError::Syntax)),
            ("[-x]", "a", Err(PatternError::Syntax)),
            ("\\", "a", Err(PatternError::Syntax)),
            ("[a-b-c]", "a", Err(PatternError::Syntax)),
            ("[", "a", Err(PatternError::Syntax)),
            ("[^", "a", Err(PatternError::Syntax)),
            ("[^bc", "a", Err(PatternError::Syntax)),
            ("a[", "a", Err(PatternError::Syntax)),
            ("a[", "ab", Err(PatternError::Syntax)),
            ("a[", "x", Err(PatternError::Syntax)),
            ("a/b[", "x", Err(PatternError::Syntax)),
            ("*x", "xxx", Ok(true)),
        ];
        for (p, n, want) in cases {
            assert_eq!(&path_match(p, n), want, "path_match({p:?}, {n:?})");
        }
    }

    #[test]
    fn a_hundred_thousand_stars_are_refused_not_recursed() {
        let stars = "*".repeat(100_000);
        assert_eq!(path_match(&stars, "busybox"), Err(PatternError::TooLong));
        let longest = "*".repeat(MAX_PATTERN_LEN);
        assert!(m(&longest, "busybox"));
        assert!(!m(&longest, "library/busybox"));
    }

    #[test]
    fn the_worst_pattern_under_the_cap_ends() {
        // Many chunks that each nearly match: Go's algorithm stays polynomial.
        let pattern = "*a".repeat(MAX_PATTERN_LEN / 2);
        let name = "a".repeat(300) + "b";
        assert!(!m(&pattern, &name));
        let pattern = format!("{}b", "*a".repeat(MAX_PATTERN_LEN / 2 - 1));
        assert!(!m(&pattern, &"a".repeat(400)));
    }

    /// A plain backtracking matcher for patterns of `*`, `?` and literals: slow, obviously
    /// right, for short inputs only.
    fn reference(p: &[char], n: &[char]) -> bool {
        match p.split_first() {
            None => n.is_empty(),
            Some(('*', rest)) => (0..=n.len())
                .take_while(|&i| i == 0 || n[i - 1] != '/')
                .any(|i| reference(rest, &n[i..])),
            Some(('?', rest)) => n.first().is_some_and(|&c| c != '/') && reference(rest, &n[1..]),
            Some((&c, rest)) => n.first() == Some(&c) && reference(rest, &n[1..]),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(ProptestConfig::default().cases.max(4096)))]
        #[test]
        fn agrees_with_a_backtracking_matcher(
            pattern in "[ab/*?]{0,10}",
            name in "[ab/]{0,10}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let n: Vec<char> = name.chars().collect();
            prop_assert_eq!(path_match(&pattern, &name), Ok(reference(&p, &n)));
        }
    }
}
