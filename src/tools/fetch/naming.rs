//! The name a download is saved under.
//!
//! ```text
//!  HTML response ─┬─ <title> found ──> decode entities ──> safe name ──> "Title.html"
//!                 └─ no title ───────> host and path ─────> safe name ──> "example.com_a_b.html"
//!  other ─────────────────────────────> last path segment ─> safe name ──> "b.png" ("/" -> "index.html")
//!  name taken ────────────────────────> "Title (2).html", "Title (3).html", ...
//! ```
//! A safe name has no `/`, `\`, control or invisible formatting characters, no leading dots, single
//! spaces, and at most [`MAX_NAME_BYTES`] bytes, so a hostile title can neither escape the download
//! folder nor hide a file.

use super::entities;
use super::target::FetchUrl;
use crate::http::Headers;

/// Longest name before the extension and any ` (n)`: well inside the 255-byte limit of common
/// file systems, and still readable in a listing.
pub const MAX_NAME_BYTES: usize = 120;

/// Whether a response is an HTML page: by Content-Type, or when it has none, by its first bytes.
pub fn is_html(headers: &Headers, first_bytes: &[u8]) -> bool {
    match headers.get("content-type") {
        Some(content_type) => {
            let media = content_type.split(';').next().unwrap_or("").trim();
            media.eq_ignore_ascii_case("text/html")
                || media.eq_ignore_ascii_case("application/xhtml+xml")
        }
        None => {
            let start = String::from_utf8_lossy(&first_bytes[..first_bytes.len().min(64)])
                .trim_start()
                .to_ascii_lowercase();
            start.starts_with("<!doctype html") || start.starts_with("<html")
        }
    }
}

/// The `charset` parameter of the Content-Type, if any.
pub fn charset(headers: &Headers) -> Option<&str> {
    headers
        .get("content-type")?
        .split(';')
        .skip(1)
        .find_map(|param| {
            let (name, value) = param.split_once('=')?;
            name.trim()
                .eq_ignore_ascii_case("charset")
                .then(|| value.trim().trim_matches('"'))
        })
}

/// Where the first `<tag ...>` ... `</tag` of `html` holds its content, ignoring ASCII case.
fn element(html: &[u8], tag: &str) -> Option<(usize, usize)> {
    let lower = html.to_ascii_lowercase();
    let open = format!("<{tag}");
    let close = format!("</{tag}");
    let mut from = 0;
    while let Some(found) = find(&lower[from..], open.as_bytes()) {
        let after = from + found + open.len();
        // `<title>` or `<title lang=en>`, not `<titles>`.
        if matches!(
            lower.get(after),
            Some(b'>' | b' ' | b'\t' | b'\r' | b'\n' | b'/')
        ) {
            let start = after + find(&lower[after..], b">")? + 1;
            let end = start + find(&lower[start..], close.as_bytes())?;
            return Some((start, end));
        }
        from = after;
    }
    None
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The page title, decoded: its text in the page's charset with character references resolved.
/// `None` when there is no complete `<title>` element in `html` or it is blank.
pub fn title(html: &[u8], charset: Option<&str>) -> Option<String> {
    let (start, end) = element(html, "title")?;
    let text = entities::decode(&entities::decode_charset(&html[start..end], charset));
    let text = collapse_whitespace(&text);
    (!text.is_empty()).then_some(text)
}

/// The text of the first `<p>` of a page, without tags: the explanation in an error page.
pub fn first_paragraph(html: &[u8], charset: Option<&str>) -> Option<String> {
    let (start, end) = element(html, "p")?;
    let raw = entities::decode_charset(&html[start..end], charset);
    let mut text = String::with_capacity(raw.len());
    let mut in_tag = false;
    for c in raw.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = collapse_whitespace(&entities::decode(&text));
    (!text.is_empty()).then(|| truncate(&text, 300).to_string())
}

fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn truncate(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Invisible characters that could disguise a name: Unicode's format characters (general category
/// Cf: the soft hyphen, zero-width and bidirectional controls, tags and the like).
fn is_invisible(c: char) -> bool {
    matches!(c as u32,
        0x00AD | 0x0600..=0x0605 | 0x061C | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2 | 0x180E
        | 0x200B..=0x200F | 0x202A..=0x202E | 0x2060..=0x2064 | 0x2066..=0x206F | 0xFEFF
        | 0xFFF9..=0xFFFB | 0x110BD | 0x110CD | 0x13430..=0x1343F | 0x1BCA0..=0x1BCA3
        | 0x1D173..=0x1D17A | 0xE0001 | 0xE0020..=0xE007F)
}

/// `text` made into a file name, or `None` if nothing usable is left.
pub fn safe_name(text: &str) -> Option<String> {
    let mapped: String = text
        .chars()
        .filter_map(|c| match c {
            '/' | '\\' => Some('-'),
            c if c.is_whitespace() => Some(' '),
            c if c.is_control() || is_invisible(c) => None,
            c => Some(c),
        })
        .collect();
    let collapsed = collapse_whitespace(&mapped);
    let trimmed = collapsed.trim_start_matches(['.', ' ']);
    let capped = truncate(trimmed, MAX_NAME_BYTES).trim_end();
    (!capped.is_empty()).then(|| capped.to_string())
}

/// The name of an HTML page: its title, or the host and path when it has none.
pub fn html_name(title: Option<&str>, url: &FetchUrl) -> String {
    if let Some(name) = title.and_then(safe_name) {
        let lower = name.to_ascii_lowercase();
        return if lower.ends_with(".html") || lower.ends_with(".htm") {
            name
        } else {
            format!("{name}.html")
        };
    }
    let mut raw = url.host.replace(':', "_");
    if url.port != 80 && url.port != 443 {
        raw.push_str(&format!("_{}", url.port));
    }
    let path = percent_decode(url.path.trim_end_matches('/'));
    raw.push_str(&path.replace(['/', '\\'], "_"));
    let name = safe_name(&raw).unwrap_or_else(|| "index".to_string());
    format!("{name}.html")
}

/// The name of any other response: the last segment of the URL path, or `index.html` for a folder.
pub fn path_name(url: &FetchUrl) -> String {
    let last = url.path.rsplit('/').next().unwrap_or("");
    safe_name(&percent_decode(last)).unwrap_or_else(|| "index.html".to_string())
}

/// `name` with ` (n)` before its extension: the n-th candidate when the name is taken.
pub fn numbered(name: &str, n: u32) -> String {
    match name.rfind('.') {
        Some(dot) if dot > 0 => format!("{} ({n}){}", &name[..dot], &name[dot..]),
        _ => format!("{name} ({n})"),
    }
}

/// `%XX` escapes decoded; the bytes read as UTF-8 with invalid sequences replaced.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> FetchUrl {
        FetchUrl::parse(text).unwrap()
    }

    fn html_headers() -> Headers {
        [("Content-Type", "text/html; charset=\"ISO-8859-1\"")]
            .into_iter()
            .collect()
    }

    #[test]
    fn finds_and_decodes_titles() {
        let page = b"<html><head><TITLE lang=en>\n  Tom &amp; Jerry&#39;s\tCaf&eacute; </title>";
        assert_eq!(title(page, None).as_deref(), Some("Tom & Jerry's Café"));
        assert_eq!(
            title(b"<titles>x</titles><title>y</title>", None).as_deref(),
            Some("y")
        );
        assert_eq!(title(b"<title>  </title>", None), None);
        assert_eq!(title(b"<title>never closed", None), None);
        assert_eq!(title(b"<p>no title</p>", None), None);
        assert_eq!(
            title(b"<title>caf\xe9</title>", charset(&html_headers())).as_deref(),
            Some("café")
        );
        let error = b"<h1>403</h1>\n<p>access to <b>x</b> is\n denied &amp; logged</p>";
        assert_eq!(
            first_paragraph(error, None).as_deref(),
            Some("access to x is denied & logged")
        );
    }

    #[test]
    fn safe_names_cannot_escape_or_hide() {
        assert_eq!(safe_name("a/b\\c").as_deref(), Some("a-b-c"));
        assert_eq!(
            safe_name("../../etc/passwd").as_deref(),
            Some("-..-etc-passwd")
        );
        assert_eq!(
            safe_name(" ..hidden  \n title\t").as_deref(),
            Some("hidden title")
        );
        assert_eq!(
            safe_name("bell\u{7}\u{0}\u{202E}txt.exe").as_deref(),
            Some("belltxt.exe")
        );
        assert_eq!(safe_name("..."), None);
        assert_eq!(safe_name(" \u{200B} "), None);
        let long = safe_name(&"é".repeat(200)).unwrap();
        assert!(long.len() <= MAX_NAME_BYTES && long.chars().all(|c| c == 'é'));
    }

    /// Found by the `html_title` fuzzer: soft hyphens (`&#173;`, or byte 0xAD in Latin-1) and other
    /// format characters outside the zero-width and bidi ranges stayed in names, invisible.
    #[test]
    fn regression_every_format_character_is_dropped() {
        let page = b"<title>caf\xe9\xad\xad &#x61C;&#x180E;&#xE0041;pass&#xFFF9;wd</title>";
        let title = title(page, Some("iso-8859-1")).unwrap();
        assert_eq!(safe_name(&title).as_deref(), Some("caf\u{e9} passwd"));
    }

    #[test]
    fn names_by_title_host_and_path() {
        let u = url("http://example.com:8080/a/b%20c/");
        assert_eq!(html_name(Some("AC/DC & more"), &u), "AC-DC & more.html");
        assert_eq!(html_name(Some("index.html"), &u), "index.html");
        assert_eq!(html_name(None, &u), "example.com_8080_a_b c.html");
        assert_eq!(
            html_name(None, &url("http://example.com/")),
            "example.com.html"
        );
        assert_eq!(path_name(&url("http://h/a/b.png?x=1")), "b.png");
        assert_eq!(path_name(&url("http://h/")), "index.html");
        assert_eq!(path_name(&url("http://h/dir/")), "index.html");
        assert_eq!(path_name(&url("http://h/%2e%2e%2fx")), "-x");
        assert_eq!(path_name(&url("http://h/caf%C3%A9.txt")), "café.txt");
    }

    #[test]
    fn numbers_duplicates_before_the_extension() {
        assert_eq!(numbered("Title.html", 2), "Title (2).html");
        assert_eq!(numbered("getbalance", 3), "getbalance (3)");
        assert_eq!(numbered("a.tar.gz", 2), "a.tar (2).gz");
    }

    #[test]
    fn html_by_content_type_or_sniffing() {
        assert!(is_html(&html_headers(), b""));
        let text: Headers = [("Content-Type", "text/plain")].into_iter().collect();
        assert!(!is_html(&text, b"<html>"));
        assert!(is_html(&Headers::new(), b"\n <!DOCTYPE html><html>"));
        assert!(!is_html(&Headers::new(), b"\x89PNG"));
    }
}
