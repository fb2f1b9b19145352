//! Text from the network made safe to show: the one escaping that every log line and every HTML page
//! Porter writes applies to hosts, URLs, header values and user names before they are printed.
//!
//! Escaped are the characters that act on the reader rather than being read: the C0 controls and
//! DEL (a `\x1b` starts a terminal escape sequence, a `\n` forges a log line), the C1 controls
//! U+0080..U+009F (U+009B is a one-character CSI, which many terminals obey), and the bidirectional
//! embeddings, overrides, isolates and marks (U+202A..U+202E, U+2066..U+2069, U+200E, U+200F, U+061C),
//! which reorder what follows them on screen so that `evil.com/moc.knab` reads as something else
//! (CVE-2021-42574, "Trojan Source"), and the line and paragraph separators U+2028, U+2029. Each
//! becomes `\u{..}` with its code point in lower-case hex, which is plain ASCII, no special
//! character in HTML, JSON or Squid's space-separated fields, and says exactly what was there.

use std::borrow::Cow;
use std::fmt::Write as _;

/// Whether `c` acts on a terminal or on the layout of the text around it instead of being shown.
pub fn is_hazard(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{202a}'..='\u{202e}'
            | '\u{2066}'..='\u{2069}'
            | '\u{200e}'
            | '\u{200f}'
            | '\u{61c}'
            | '\u{2028}'
            | '\u{2029}'
    )
}

/// Appends `c` as `\u{9b}`.
pub fn push_escaped(out: &mut String, c: char) {
    let _ = write!(out, "\\u{{{:x}}}", c as u32);
}

/// `text` with every [`is_hazard`] character written as `\u{..}`; borrowed when there is none.
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_except(text, &[])
}

/// Like [`escape`], keeping the characters in `keep` (the general log keeps the newlines of
/// messages Porter writes over several lines).
pub fn escape_except<'a>(text: &'a str, keep: &[char]) -> Cow<'a, str> {
    // Every hazard is a control or not ASCII: printable ASCII, nearly all of what is logged, is
    // passed by a byte test instead of being decoded into characters one by one.
    if text.bytes().all(|b| matches!(b, b' '..=b'~')) {
        return Cow::Borrowed(text);
    }
    let hazard = |c: char| is_hazard(c) && !keep.contains(&c);
    let Some(first) = text.find(hazard) else {
        return Cow::Borrowed(text);
    };
    let mut out = String::with_capacity(text.len() + 16);
    out.push_str(&text[..first]);
    for c in text[first..].chars() {
        if hazard(c) {
            push_escaped(&mut out, c);
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_overrides_are_written_out_and_the_rest_is_kept() {
        assert!(matches!(escape("example.com/é?q=1"), Cow::Borrowed(_)));
        assert_eq!(
            escape("a\u{9b}31m\u{202e}b\u{1b}[0m\u{2067}\u{7f}\tc"),
            "a\\u{9b}31m\\u{202e}b\\u{1b}[0m\\u{2067}\\u{7f}\\u{9}c"
        );
        for c in ['\u{80}', '\u{9f}', '\u{202a}', '\u{2069}', '\u{0}', '\n'] {
            assert!(is_hazard(c), "{c:?}");
        }
        for c in ['\u{a0}', '\u{2070}', '\u{2029}' /* separator */] {
            assert_eq!(is_hazard(c), c == '\u{2029}', "{c:?}");
        }
        assert_eq!(escape_except("a\nb\u{9b}", &['\n']), "a\nb\\u{9b}");
    }
}
