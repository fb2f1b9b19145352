//! The HTML title scanner of `porter fetch` on arbitrary page bytes: no panic, and a title that
//! becomes a file name can neither escape the download folder nor hide (no separators, leading dots,
//! control or invisible formatting characters), within the length cap.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porter::tools::fetch::FetchUrl;
use porter::tools::fetch::naming;
use porter::http::Headers;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, html)) = data.split_first() else {
        return;
    };
    let charset = match selector % 3 {
        0 => None,
        1 => Some("iso-8859-1"),
        _ => Some("utf-8"),
    };
    let _ = naming::is_html(&Headers::new(), html);
    let _ = naming::first_paragraph(html, charset);
    let title = naming::title(html, charset);
    if let Some(title) = &title {
        assert!(!title.is_empty());
        assert_eq!(title.trim(), title, "title not trimmed");
        assert!(!title.contains("  "), "title whitespace not collapsed");
        if let Some(name) = naming::safe_name(title) {
            check_name(&name);
        }
    }
    let url = FetchUrl::parse("http://example.com/a/b").expect("a valid url");
    let name = naming::html_name(title.as_deref(), &url);
    assert!(name.ends_with(".html") || name.ends_with(".htm") || name.ends_with(".HTML"));
    check_name(&name.trim_end_matches(".html").to_string());
});

fn check_name(name: &str) {
    assert!(!name.is_empty());
    assert!(
        name.len() <= naming::MAX_NAME_BYTES + ".html".len(),
        "{name:?} too long"
    );
    assert!(
        !name.contains(['/', '\\', '\0']),
        "{name:?} has a separator"
    );
    assert!(
        !name.starts_with(['.', ' ']),
        "{name:?} starts with a dot or space"
    );
    assert!(!name.ends_with(' '), "{name:?} ends with a space");
    for c in name.chars() {
        assert!(!c.is_control(), "{name:?} has control {c:?}");
        assert!(
            !is_format(c),
            "{name:?} has invisible format character {:04X}",
            c as u32
        );
    }
}

/// Unicode general category Cf (format characters: invisible, and some reorder text).
fn is_format(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}
