//! Serialising heads into a buffer, so a head (and a small body) leaves in one write.

use super::{Headers, RequestHead, ResponseHead};

/// Appends `HTTP/1.1 200 OK\r\n` and the fields, and the blank line ending the head.
pub fn response_head(out: &mut Vec<u8>, head: &ResponseHead) {
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(itoa3(head.status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.reason.as_bytes());
    out.extend_from_slice(b"\r\n");
    fields(out, &head.headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends an HTTP/1.1 status line, for callers writing fields one by one.
pub fn status_line(out: &mut Vec<u8>, status: u16, reason: &str) {
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(itoa3(status).as_bytes());
    out.push(b' ');
    out.extend_from_slice(reason.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Appends one `Name: value` line.
pub fn field(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// Appends a request line, the fields, and the blank line.
pub fn request_head(out: &mut Vec<u8>, head: &RequestHead) {
    out.extend_from_slice(head.method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.target.as_bytes());
    out.push(b' ');
    out.extend_from_slice(head.version.as_str().as_bytes());
    out.extend_from_slice(b"\r\n");
    fields(out, &head.headers);
    out.extend_from_slice(b"\r\n");
}

/// Appends every field, for callers that write a head in parts (a status line, stored fields, then
/// their own).
pub fn fields(out: &mut Vec<u8>, headers: &Headers) {
    for (name, value) in headers.iter() {
        field(out, name, value);
    }
}

fn itoa3(status: u16) -> String {
    format!("{status:03}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::{Limits, parse};

    #[test]
    fn written_heads_parse_back() {
        let mut head = ResponseHead::new(404);
        head.headers.append("Content-Length", "0");
        let mut out = Vec::new();
        response_head(&mut out, &head);
        assert_eq!(out, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n");
        let (parsed, _) = parse::response(&out, &Limits::default()).unwrap().unwrap();
        assert_eq!(parsed, head);
    }
}
