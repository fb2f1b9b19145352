//! HTTP-dates as recipients must read them (RFC 9110 §5.6.7): IMF-fixdate, and the obsolete RFC 850
//! and asctime formats, with day and month names in any letter case (`TUE, 14 NOV 2023 …` and
//! `tuesday, 14-nov-23 …` are the same instant). `httpdate` does the three grammars but wants the
//! names exactly as written in the RFC, so the names are recased first.
//!
//! A value that still does not parse is `None`; what that means (an invalid Expires is "already
//! expired", an invalid If-Modified-Since is ignored) is the caller's rule.

use std::time::SystemTime;

/// Parses an HTTP-date in any of the three formats, names in any case, surrounding space ignored.
pub fn parse(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(t) = httpdate::parse_http_date(text) {
        return Some(t);
    }
    if !text.is_ascii() {
        return None;
    }
    httpdate::parse_http_date(&recase(text)).ok()
}

/// Every run of letters as `Capitalised`, except `GMT`.
fn recase(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.eq_ignore_ascii_case("gmt") {
            out.push_str("GMT");
        } else {
            for (i, c) in word.chars().enumerate() {
                out.push(if i == 0 {
                    c.to_ascii_uppercase()
                } else {
                    c.to_ascii_lowercase()
                });
            }
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphabetic() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// Sunday, 6 November 1994, 08:49:37 UTC: the RFC's own example.
    fn rfc_example() -> Option<SystemTime> {
        Some(UNIX_EPOCH + Duration::from_secs(784_111_777))
    }

    #[test]
    fn the_three_formats_of_rfc_9110_are_read() {
        for text in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "  Sun, 06 Nov 1994 08:49:37 GMT ",
        ] {
            assert_eq!(parse(text), rfc_example(), "{text:?}");
        }
    }

    #[test]
    fn names_in_the_wrong_case_are_read() {
        for text in [
            "SUN, 06 NOV 1994 08:49:37 GMT",
            "sun, 06 nov 1994 08:49:37 gmt",
            "SUNDAY, 06-nov-94 08:49:37 Gmt",
            "sun NOV  6 08:49:37 1994",
        ] {
            assert_eq!(parse(text), rfc_example(), "{text:?}");
        }
    }

    #[test]
    fn other_text_is_not_a_date() {
        for text in [
            "0",
            "-1",
            "",
            "tomorrow",
            "Sun, 06 Nov 1994",
            "Sün, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(text), None, "{text:?}");
        }
    }
}
