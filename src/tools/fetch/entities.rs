//! HTML character references (`&amp;`, `&#39;`, `&#x27;`, `&eacute;`) in page titles, and the legacy
//! single-byte charsets a title may come in.
//!
//! The named table covers what titles use in practice: the markup characters, all of Latin-1, the
//! typographic punctuation of Windows-1252 and the Greek letters. An unknown name is left as written,
//! as browsers do.

/// Latin-1 names for U+00A0..=U+00FF, in code point order (HTML 4.01 §24.2).
const LATIN1: [&str; 96] = [
    "nbsp", "iexcl", "cent", "pound", "curren", "yen", "brvbar", "sect", "uml", "copy", "ordf",
    "laquo", "not", "shy", "reg", "macr", "deg", "plusmn", "sup2", "sup3", "acute", "micro",
    "para", "middot", "cedil", "sup1", "ordm", "raquo", "frac14", "frac12", "frac34", "iquest",
    "Agrave", "Aacute", "Acirc", "Atilde", "Auml", "Aring", "AElig", "Ccedil", "Egrave", "Eacute",
    "Ecirc", "Euml", "Igrave", "Iacute", "Icirc", "Iuml", "ETH", "Ntilde", "Ograve", "Oacute",
    "Ocirc", "Otilde", "Ouml", "times", "Oslash", "Ugrave", "Uacute", "Ucirc", "Uuml", "Yacute",
    "THORN", "szlig", "agrave", "aacute", "acirc", "atilde", "auml", "aring", "aelig", "ccedil",
    "egrave", "eacute", "ecirc", "euml", "igrave", "iacute", "icirc", "iuml", "eth", "ntilde",
    "ograve", "oacute", "ocirc", "otilde", "ouml", "divide", "oslash", "ugrave", "uacute", "ucirc",
    "uuml", "yacute", "thorn", "yuml",
];

/// Greek small letters U+03B1..=U+03C9, in code point order.
const GREEK_SMALL: [&str; 25] = [
    "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa",
    "lambda", "mu", "nu", "xi", "omicron", "pi", "rho", "sigmaf", "sigma", "tau", "upsilon", "phi",
    "chi", "psi", "omega",
];

/// Everything else by name.
const OTHER: &[(&str, char)] = &[
    ("amp", '&'),
    ("lt", '<'),
    ("gt", '>'),
    ("quot", '"'),
    ("apos", '\''),
    ("ndash", '\u{2013}'),
    ("mdash", '\u{2014}'),
    ("lsquo", '\u{2018}'),
    ("rsquo", '\u{2019}'),
    ("sbquo", '\u{201A}'),
    ("ldquo", '\u{201C}'),
    ("rdquo", '\u{201D}'),
    ("bdquo", '\u{201E}'),
    ("dagger", '\u{2020}'),
    ("Dagger", '\u{2021}'),
    ("bull", '\u{2022}'),
    ("hellip", '\u{2026}'),
    ("permil", '\u{2030}'),
    ("lsaquo", '\u{2039}'),
    ("rsaquo", '\u{203A}'),
    ("euro", '\u{20AC}'),
    ("trade", '\u{2122}'),
    ("larr", '\u{2190}'),
    ("uarr", '\u{2191}'),
    ("rarr", '\u{2192}'),
    ("darr", '\u{2193}'),
    ("harr", '\u{2194}'),
    ("hearts", '\u{2665}'),
    ("OElig", '\u{0152}'),
    ("oelig", '\u{0153}'),
    ("Scaron", '\u{0160}'),
    ("scaron", '\u{0161}'),
    ("Yuml", '\u{0178}'),
    ("fnof", '\u{0192}'),
    ("circ", '\u{02C6}'),
    ("tilde", '\u{02DC}'),
    ("ensp", '\u{2002}'),
    ("emsp", '\u{2003}'),
    ("thinsp", '\u{2009}'),
    ("zwnj", '\u{200C}'),
    ("zwj", '\u{200D}'),
    ("lrm", '\u{200E}'),
    ("rlm", '\u{200F}'),
];

/// The longest name we look up; a longer run before `;` is not a reference.
const MAX_NAME: usize = 8;

fn named(name: &str) -> Option<char> {
    if let Some(i) = LATIN1.iter().position(|&n| n == name) {
        return char::from_u32(0xA0 + i as u32);
    }
    if let Some(i) = GREEK_SMALL.iter().position(|&n| n == name) {
        return char::from_u32(0x3B1 + i as u32);
    }
    OTHER.iter().find(|(n, _)| *n == name).map(|&(_, c)| c)
}

/// Windows-1252's characters for 0x80..=0x9F, which HTML also uses for `&#128;`..`&#159;`
/// (WHATWG HTML, numeric character reference end state). Unassigned bytes map to themselves.
fn windows_1252_c1(byte: u32) -> u32 {
    const TABLE: [u32; 32] = [
        0x20AC, 0x81, 0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
        0x2039, 0x0152, 0x8D, 0x017D, 0x8F, 0x90, 0x2018, 0x2019, 0x201C, 0x201D, 0x2022, 0x2013,
        0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0x9D, 0x017E, 0x0178,
    ];
    match byte {
        0x80..=0x9F => TABLE[(byte - 0x80) as usize],
        other => other,
    }
}

fn numeric(digits: &str) -> Option<char> {
    let value = match digits.strip_prefix(['x', 'X']) {
        Some(hex) if !hex.is_empty() && hex.len() <= 8 => u32::from_str_radix(hex, 16).ok()?,
        Some(_) => return None,
        None if !digits.is_empty() && digits.len() <= 10 => digits.parse::<u32>().ok()?,
        None => return None,
    };
    // NUL, surrogates and values past U+10FFFF become the replacement character, as in browsers.
    Some(
        char::from_u32(windows_1252_c1(value))
            .filter(|&c| c != '\0')
            .unwrap_or('\u{FFFD}'),
    )
}

/// Replaces character references with the characters they stand for.
pub fn decode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        // A reference is short: `&#x10FFFF;` at most, so only the next few bytes can hold its `;`.
        let semi = rest.as_bytes()[1..]
            .iter()
            .take(12)
            .position(|&b| b == b';');
        let decoded = semi.and_then(|semi| {
            let body = &rest[1..1 + semi];
            let c = match body.strip_prefix('#') {
                Some(digits) => numeric(digits),
                None if body.len() <= MAX_NAME => named(body),
                None => None,
            }?;
            Some((c, semi + 2))
        });
        match decoded {
            Some((c, used)) => {
                out.push(c);
                rest = &rest[used..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Text from bytes in the charset a Content-Type names: the single-byte Latin ones byte for byte,
/// anything else as UTF-8 with invalid sequences replaced.
pub fn decode_charset(bytes: &[u8], charset: Option<&str>) -> String {
    let single_byte = charset.is_some_and(|c| {
        [
            "iso-8859-1",
            "latin1",
            "latin-1",
            "windows-1252",
            "cp1252",
            "us-ascii",
            "ascii",
        ]
        .iter()
        .any(|name| c.eq_ignore_ascii_case(name))
    });
    if single_byte {
        bytes
            .iter()
            .map(|&b| char::from_u32(windows_1252_c1(u32::from(b))).unwrap_or('\u{FFFD}'))
            .collect()
    } else {
        String::from_utf8_lossy(bytes).into_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_named_and_numeric_references() {
        assert_eq!(
            decode("Tom &amp; Jerry&#39;s Caf&eacute;"),
            "Tom & Jerry's Café"
        );
        assert_eq!(decode("&#x27;&#X41;&#65;&lt;b&gt;&quot;"), "'AA<b>\"");
        assert_eq!(
            decode("&Eacute;t&eacute; &ndash; 5&euro; &alpha;&omega;"),
            "Été – 5€ αω"
        );
        assert_eq!(decode("&nbsp;&yuml;&iexcl;"), "\u{A0}ÿ¡");
        assert_eq!(
            decode("&#150;&#0;&#xD800;&#99999999;"),
            "–\u{FFFD}\u{FFFD}\u{FFFD}"
        );
    }

    #[test]
    fn leaves_what_is_not_a_reference() {
        for text in [
            "a & b",
            "&unknown;",
            "&amp",
            "&#;",
            "&#x;",
            "&;",
            "AT&T;",
            "&#12345678901;",
        ] {
            assert_eq!(decode(text), text);
        }
        assert_eq!(decode("&&amp;"), "&&");
        assert_eq!(decode("é&eacute"), "é&eacute");
    }

    #[test]
    fn single_byte_charsets() {
        assert_eq!(
            decode_charset(b"caf\xe9 \x96", Some("ISO-8859-1")),
            "café –"
        );
        assert_eq!(decode_charset("café".as_bytes(), Some("utf-8")), "café");
        assert_eq!(decode_charset(b"caf\xe9", None), "caf\u{FFFD}");
    }
}
