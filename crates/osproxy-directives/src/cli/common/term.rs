//! Text for a terminal from values that came from etcd.
//!
//! Why: etcd's contents are untrusted. A target, a key, an instance report
//! or a note can hold terminal escape sequences (clear the screen, move the
//! cursor, paint a fake "ALL GOOD") or bidirectional overrides that reorder
//! what the eye reads. Human output goes through [`safe`] (or the [`say`]
//! macro) so every such character shows as a visible escape (`\u{1b}`);
//! JSON output needs nothing more, its encoder escapes control characters.

use std::borrow::Cow;
use std::io::Write;

/// Whether `c` must not reach a terminal as is: C0 and C1 controls and DEL
/// (line breaks included: a value never spans lines), and the Unicode
/// format characters that reorder or hide text.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{200B}'..='\u{200F}' // zero-width and direction marks
            | '\u{202A}'..='\u{202E}' // embeddings and overrides
            | '\u{2066}'..='\u{2069}' // isolates
            | '\u{FEFF}')
}

/// `text` with every unsafe character written as `\u{…}`; borrowed when
/// there is none (the common case).
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if unsafe_char(c) {
            out.push_str(&c.escape_unicode().to_string());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Writes `text` to standard output, one line per `\n` of it, each made
/// [`safe`].
pub fn print_lines(text: &str) {
    let mut out = std::io::stdout().lock();
    for line in text.lines() {
        let _ = writeln!(out, "{}", safe(line));
    }
    let _ = out.flush();
}

/// Writes `text` to standard error, made [`safe`] line by line.
pub fn eprint_lines(text: &str) {
    let mut err = std::io::stderr().lock();
    for line in text.lines() {
        let _ = writeln!(err, "{}", safe(line));
    }
}

/// `println!` for text that may hold values from etcd: see [`safe`].
macro_rules! say {
    ($($arg:tt)*) => {
        $crate::cli::common::term::print_lines(&format!($($arg)*))
    };
}

/// `eprintln!` for text that may hold values from etcd: see [`safe`].
macro_rules! warn_say {
    ($($arg:tt)*) => {
        $crate::cli::common::term::eprint_lines(&format!($($arg)*))
    };
}

pub(crate) use {say, warn_say};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_a_terminal_would_obey() {
        assert!(matches!(safe("acme tenant-1 ünïcode"), Cow::Borrowed(_)));
        assert_eq!(safe("a\u{1b}[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("x\ry"), "x\\u{d}y");
        assert_eq!(safe("\u{9b}31m"), "\\u{9b}31m");
        assert_eq!(safe("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(safe("\u{7f}"), "\\u{7f}");
        assert_eq!(safe("a\nb"), "a\\u{a}b");
    }
}
