//! The response head parser on arbitrary bytes: the same promises as `request_head`, for what an
//! origin sends: no panic, strict heads only, status 100..=999, prefixes incomplete, and the framing
//! decision (RFC 9112 §6.3) never panics for any method.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porter::http::{Limits, ResponseHead, body, parse, write};

fuzz_target!(|data: &[u8]| {
    let small = Limits {
        max_head_bytes: 256,
        max_headers: 4,
        max_uri_bytes: 32,
    };
    for limits in [Limits::default(), small] {
        let Ok(Some((head, len))) = parse::response(data, &limits) else {
            continue;
        };
        assert!(len <= data.len() && len <= limits.max_head_bytes);
        assert!((100..=999).contains(&head.status));
        checks::head_bytes_are_strict(&data[..len]);
        checks::fields_are_strict(&head.headers);
        assert!(
            head.reason
                .bytes()
                .all(|b| b == b'\t' || (b >= b' ' && b != 0x7f)),
            "reason {:?}",
            head.reason
        );
        assert_eq!(
            parse::response(&data[..len], &limits),
            Ok(Some((head.clone(), len)))
        );
        for end in [0, len / 2, len.saturating_sub(1)] {
            if end < len {
                assert_eq!(
                    parse::response(&data[..end], &limits),
                    Ok(None),
                    "prefix {end}"
                );
            }
        }
        for method in ["GET", "HEAD", "POST"] {
            let _ = body::response_mode(&method.into(), head.status, &head.headers);
        }
        let _ = head.keep_alive();
        round_trip(&head);
    }
});

fn round_trip(head: &ResponseHead) {
    let mut out = Vec::new();
    write::response_head(&mut out, head);
    let generous = Limits {
        max_head_bytes: usize::MAX,
        ..Limits::default()
    };
    let (again, len) = parse::response(&out, &generous)
        .expect("a written head parses")
        .expect("a written head is complete");
    assert_eq!(len, out.len());
    assert_eq!(&again, head);
}

mod checks {
    include!("checks.rs");
}
