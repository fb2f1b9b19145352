//! The HTML that Porter writes itself: escaping, the one document frame every page uses (the proxy's
//! status page, the origin's directory listings), and the one small page (a heading and a paragraph)
//! that the proxy's error and status answers, the origin server's pages and the acceptor's refusals
//! all share. Serving it is left to each caller; only [`refusal`] is a whole response, because the
//! acceptor answers before any handler is involved.

use crate::http::reason_phrase;

/// Escapes text for an HTML element body or attribute; control characters and bidi overrides are
/// written out as [`crate::printable`] does for the logs.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            c if crate::printable::is_hazard(c) => crate::printable::push_escaped(&mut out, c),
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A complete HTML document: `title` (escaped here) in its head, `body_html` (already HTML) as its
/// body.
pub fn document(title: &str, body_html: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{}</title></head>\n\
         <body>{body_html}</body></html>\n",
        escape(title)
    )
}

/// A complete HTML document for a page of its own: `title` (escaped here), a viewport for phones, a
/// style sheet `css` (written as is: it is the page's own constant) and `body_html` (already HTML).
pub fn styled_document(title: &str, css: &str, body_html: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{}</title><style>{css}</style></head>\n<body>{body_html}</body></html>\n",
        escape(title)
    )
}

/// A document with `title` as its heading and a paragraph of already-escaped HTML, signed by
/// `signature` (`porter`, `porter serve`).
pub fn page(title: &str, paragraph_html: &str, signature: &str) -> String {
    let body = format!(
        "<h1>{}</h1>\n<p>{paragraph_html}</p>\n<hr><address>{signature}</address>",
        escape(title)
    );
    document(title, &body)
}

/// The page for a status: `404 Not Found` as its title, and `message` (escaped) as its text.
pub fn status_page(status: u16, message: &str, signature: &str) -> String {
    let title = format!("{status} {}", reason_phrase(status));
    page(&title, &escape(message), signature)
}

/// A complete `Connection: close` response with a status page, for the acceptor to send to a client
/// it turns away.
pub fn refusal(status: u16, message: &str) -> Vec<u8> {
    let reason = reason_phrase(status);
    let body = status_page(status, message, "porter");
    format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_pages_escape_their_message() {
        let page = status_page(404, "<script>", "porter");
        assert!(page.contains("&lt;script&gt;") && page.contains("404 Not Found"));
    }

    #[test]
    fn control_characters_and_bidi_overrides_are_written_out() {
        assert_eq!(
            escape("a\u{9b}1m<\u{202e}b\u{2066}"),
            "a\\u{9b}1m&lt;\\u{202e}b\\u{2066}"
        );
    }

    #[test]
    fn refusals_frame_their_page() {
        let bytes = refusal(503, "too many connections");
        let text = String::from_utf8(bytes).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.contains(&format!("Content-Length: {}", body.len())),
            "{head}"
        );
        assert!(head.contains("Connection: close"), "{head}");
    }
}
