//! The request head parser on arbitrary bytes: it must never panic, a head it accepts must be one
//! RFC 9112 allows (no bare CR or LF, no NUL, no obs-fold, token names, no control bytes in values),
//! every prefix of an accepted head must be "need more bytes", and a head written back out must parse
//! to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porter::http::{Limits, RequestHead, body, parse, write};

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_uri_bytes: 32,
    };
    for limits in [Limits::default(), small] {
        let Ok(Some((head, len))) = parse::request(data, &limits) else {
            continue;
        };
        assert!(len <= data.len() && len <= limits.max_head_bytes);
        assert!(head.target.len() <= limits.max_uri_bytes);
        checks::head_bytes_are_strict(&data[..len]);
        checks::fields_are_strict(&head.headers);
        let method = head.method.as_str();
        assert!(!method.is_empty() && method.bytes().all(checks::is_tchar));
        assert!(
            !head.target.is_empty() && head.target.bytes().all(|b| b > b' ' && b != 0x7f),
            "target {:?}",
            head.target
        );
        assert_eq!(
            parse::request(&data[..len], &limits),
            Ok(Some((head.clone(), len)))
        );
        for end in [0, len / 2, len.saturating_sub(1)] {
            if end < len {
                assert_eq!(
                    parse::request(&data[..end], &limits),
                    Ok(None),
                    "prefix {end}"
                );
            }
        }
        let _ = body::request_mode(&head.headers);
        let _ = head.keep_alive();
        round_trip(&head);
    }
});

fn round_trip(head: &RequestHead) {
    let mut out = Vec::new();
    write::request_head(&mut out, head);
    let generous = Limits {
        max_head_bytes: usize::MAX,
        ..Limits::default()
    };
    let (again, len) = parse::request(&out, &generous)
        .expect("a written head parses")
        .expect("a written head is complete");
    assert_eq!(len, out.len());
    assert_eq!(&again, head);
}

/// Checks shared by the head targets (kept in each file: fuzz targets are single files).
mod checks {
    include!("checks.rs");
}
