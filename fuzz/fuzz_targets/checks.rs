// Included by the head fuzz targets: what RFC 9112 allows in a head Porter accepts.

use porter::http::Headers;

/// tchar of RFC 9110 §5.6.2.
pub fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// No bare CR or LF, no NUL, and no obs-fold (a line starting with SP or HTAB) in an accepted head.
pub fn head_bytes_are_strict(head: &[u8]) {
    for (i, &b) in head.iter().enumerate() {
        assert_ne!(b, 0, "NUL at {i}");
        if b == b'\n' {
            assert!(i > 0 && head[i - 1] == b'\r', "bare LF at {i}");
            if let Some(&next) = head.get(i + 1) {
                assert!(next != b' ' && next != b'\t', "obs-fold at {i}");
            }
        }
        if b == b'\r' {
            assert_eq!(head.get(i + 1), Some(&b'\n'), "bare CR at {i}");
        }
    }
}

/// Field names are tokens; values hold no control bytes but HTAB and no leading or trailing space.
pub fn fields_are_strict(headers: &Headers) {
    for (name, value) in headers.iter() {
        assert!(
            !name.is_empty() && name.bytes().all(is_tchar),
            "field name {name:?}"
        );
        assert!(
            value.iter().all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f)),
            "field value {value:?}"
        );
        assert!(
            !value.first().is_some_and(|b| *b == b' ' || *b == b'\t')
                && !value.last().is_some_and(|b| *b == b' ' || *b == b'\t'),
            "untrimmed value {value:?}"
        );
    }
}
