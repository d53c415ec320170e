//! Glob patterns over event names with the semantics of Python's
//! `fnmatch.fnmatchcase`, so a pattern means the same here and in a Python
//! worker: `*` any run of characters (dots included), `?` one character,
//! `[abc]` / `[a-z]` / `[!abc]` a class; everything else is literal.

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Star,
    One,
    Lit(char),
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

/// A parsed pattern.
#[derive(Debug, Clone, PartialEq)]
pub struct Glob {
    tokens: Vec<Token>,
}

impl Glob {
    pub fn new(pattern: &str) -> Glob {
        let chars: Vec<char> = pattern.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let (token, next) = match chars[i] {
                '*' => (Token::Star, i + 1),
                '?' => (Token::One, i + 1),
                '[' => parse_class(&chars, i),
                c => (Token::Lit(c), i + 1),
            };
            // Consecutive stars match the same as one.
            if !(token == Token::Star && tokens.last() == Some(&Token::Star)) {
                tokens.push(token);
            }
            i = next;
        }
        Glob { tokens }
    }

    /// Matches the whole name, with one-star backtracking (linear for the
    /// patterns people write, never exponential).
    pub fn matches(&self, name: &str) -> bool {
        let text: Vec<char> = name.chars().collect();
        let (mut t, mut p) = (0, 0);
        let mut backtrack: Option<(usize, usize)> = None;
        while t < text.len() {
            match self.tokens.get(p) {
                Some(Token::Star) => {
                    backtrack = Some((p + 1, t));
                    p += 1;
                }
                Some(tok) if single_matches(tok, text[t]) => {
                    p += 1;
                    t += 1;
                }
                _ => match backtrack {
                    Some((bp, bt)) => {
                        p = bp;
                        t = bt + 1;
                        backtrack = Some((bp, bt + 1));
                    }
                    None => return false,
                },
            }
        }
        self.tokens[p..].iter().all(|tok| *tok == Token::Star)
    }
}

/// True when any of `globs` matches `name`.
pub fn any_matches(globs: &[Glob], name: &str) -> bool {
    globs.iter().any(|g| g.matches(name))
}

fn single_matches(token: &Token, c: char) -> bool {
    match token {
        Token::Star => false,
        Token::One => true,
        Token::Lit(l) => *l == c,
        Token::Class { negated, ranges } => {
            ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
        }
    }
}

/// Parses `[...]` starting at `start`; an unclosed `[` is a literal, as in fnmatch.
fn parse_class(chars: &[char], start: usize) -> (Token, usize) {
    let mut j = start + 1;
    let negated = chars.get(j) == Some(&'!');
    if negated {
        j += 1;
    }
    let body_start = j;
    // A `]` right after `[` or `[!` belongs to the class.
    if chars.get(j) == Some(&']') {
        j += 1;
    }
    let Some(close) = (j..chars.len()).find(|&k| chars[k] == ']') else {
        return (Token::Lit('['), start + 1);
    };
    let body = &chars[body_start..close];
    let mut ranges = Vec::new();
    let mut k = 0;
    while k < body.len() {
        if k + 2 < body.len() && body[k + 1] == '-' {
            ranges.push((body[k], body[k + 2]));
            k += 3;
        } else {
            ranges.push((body[k], body[k]));
            k += 1;
        }
    }
    (Token::Class { negated, ranges }, close + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(p: &str, n: &str) -> bool {
        Glob::new(p).matches(n)
    }

    #[test]
    fn star_crosses_dots_like_fnmatch() {
        assert!(m("python.*", "python.call.start"));
        assert!(m("*.stop", "tool.execution.stop"));
        assert!(m("*", ""));
        assert!(m("tool.*.stop", "tool.execution.stop"));
        assert!(!m("python.*", "tool.execution.stop"));
        assert!(!m("python.*", "python"));
    }

    #[test]
    fn literals_must_match_the_whole_name() {
        assert!(m("tool.result_size", "tool.result_size"));
        assert!(!m("tool.result", "tool.result_size"));
        assert!(!m("tool.result_size", "tool.result"));
    }

    #[test]
    fn question_mark_and_classes() {
        assert!(m("python.c?u.sampled", "python.cpu.sampled"));
        assert!(m("python.[cg]*", "python.gc.completed"));
        assert!(!m("python.[!cg]*", "python.gc.completed"));
        assert!(m("python.[a-d]*", "python.call.start"));
        assert!(m("a[]]b", "a]b"));
        assert!(m("a[b", "a[b"), "unclosed bracket is literal");
    }

    #[test]
    fn backtracking_finds_later_matches() {
        assert!(m("*.*.stop", "python.call.stop"));
        assert!(m("*a*a*a", "banana.a"));
        assert!(!m("*a*a*x", "banana"));
    }
}
