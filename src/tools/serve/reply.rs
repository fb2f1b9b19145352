//! Responses as the origin server writes them: a head and a body that is either bytes in memory or a
//! slice of an open file, sent with sendfile(2) ([`crate::net::sendfile`]) so a large file never sits
//! in memory. Also the server's own small HTML pages (errors, the ban page, the center of the pop).

use std::fs::File;
use std::io::{self, Write};

use super::export::Export;
use crate::http::body::ChunkedWriter;
use crate::net::sendfile::SendFile;
use std::time::SystemTime;

use crate::html;
use crate::http::{ResponseHead, Version, connection_field, write};

/// What follows the head.
#[derive(Debug)]
pub enum Body {
    /// No body and no Content-Length (304).
    Empty,
    Bytes(Vec<u8>),
    /// `len` bytes of `file` from `start`.
    File {
        file: File,
        start: u64,
        len: u64,
    },
    /// The event log for `/getlogs`, streamed: chunked for HTTP/1.1, to the close for HTTP/1.0.
    Events(Export),
}

/// A response ready to send.
#[derive(Debug)]
pub struct Reply {
    pub head: ResponseHead,
    pub body: Body,
}

/// What the request says about how to answer it.
#[derive(Debug, Clone, Copy)]
pub struct Exchange {
    pub version: Version,
    /// Whether the connection stays open afterwards.
    pub keep_alive: bool,
    /// HEAD: the head only, with the Content-Length a GET would get.
    pub head_only: bool,
}

/// A complete page around a heading and a paragraph of already-escaped HTML, signed `porter serve`.
pub fn page_html(title: &str, paragraph_html: &str) -> String {
    html::page(title, paragraph_html, "porter serve")
}

impl Reply {
    pub fn new(status: u16, body: Body) -> Reply {
        Reply {
            head: ResponseHead::new(status),
            body,
        }
    }

    /// A dynamic HTML page: never stored by shared caches.
    pub fn html(status: u16, html: String) -> Reply {
        Reply::new(status, Body::Bytes(html.into_bytes()))
            .header("Content-Type", "text/html; charset=utf-8")
            .header("Cache-Control", "no-store")
    }

    /// A small page with a heading and one paragraph of (escaped) text.
    pub fn page(status: u16, title: &str, message: &str) -> Reply {
        Reply::html(status, page_html(title, &html::escape(message)))
    }

    /// An error page: `404 Not Found` and why.
    pub fn error(status: u16, message: &str) -> Reply {
        Reply::html(status, html::status_page(status, message, "porter serve"))
    }

    pub fn header(mut self, name: &str, value: impl AsRef<[u8]>) -> Reply {
        self.head.headers.append(name, value);
        self
    }

    pub fn status(&self) -> u16 {
        self.head.status
    }
}

/// Writes the reply; returns the bytes sent. Adds Date, Server, Content-Length and Connection.
pub fn send(stream: &mut impl SendFile, reply: Reply, exchange: &Exchange) -> io::Result<u64> {
    let Reply { mut head, body } = reply;
    let headers = &mut head.headers;
    headers.set("Date", httpdate::fmt_http_date(SystemTime::now()));
    headers.set("Server", "porter");
    match &body {
        Body::Empty => {}
        Body::Bytes(bytes) => headers.set("Content-Length", bytes.len().to_string()),
        Body::File { len, .. } => headers.set("Content-Length", len.to_string()),
        Body::Events(_) if exchange.version == Version::Http11 => {
            headers.set("Transfer-Encoding", "chunked");
        }
        // HTTP/1.0 has no chunked coding: the body ends with the connection (the caller closes it).
        Body::Events(_) => {}
    }
    if let Some(value) = connection_field(exchange.version, exchange.keep_alive) {
        headers.set("Connection", value);
    }
    let mut out = Vec::with_capacity(512);
    write::response_head(&mut out, &head);
    let head_len = out.len() as u64;
    match body {
        Body::Bytes(bytes) if !exchange.head_only => {
            out.extend_from_slice(&bytes);
            stream.write_all(&out)?;
            Ok(out.len() as u64)
        }
        Body::File { file, start, len } if !exchange.head_only => {
            stream.write_all(&out)?;
            let copied = stream.send_file(&file, start, len)?;
            if copied < len {
                // The file shrank under us: the framing promised more, so the connection must end.
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "file shrank while it was being sent",
                ));
            }
            Ok(head_len + copied)
        }
        Body::Events(export) if !exchange.head_only => {
            stream.write_all(&out)?;
            let body = if exchange.version == Version::Http11 {
                let mut chunked =
                    io::BufWriter::with_capacity(32 * 1024, ChunkedWriter::new(&mut *stream));
                let n = export.write_to(&mut chunked)?;
                chunked.into_inner().map_err(|e| e.into_error())?.finish()?;
                n
            } else {
                let mut plain = io::BufWriter::with_capacity(32 * 1024, &mut *stream);
                let n = export.write_to(&mut plain)?;
                plain.flush()?;
                n
            };
            Ok(head_len + body)
        }
        _ => {
            stream.write_all(&out)?;
            Ok(head_len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(keep_alive: bool, head_only: bool) -> Exchange {
        Exchange {
            version: Version::Http11,
            keep_alive,
            head_only,
        }
    }

    #[test]
    fn head_requests_get_the_length_but_no_body() {
        let mut out = Vec::new();
        let reply = Reply::new(200, Body::Bytes(b"hello".to_vec()));
        send(&mut out, reply, &exchange(true, true)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Content-Length: 5\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n"), "{text}");
    }

    #[test]
    fn streams_a_file_slice() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"0123456789").unwrap();
        let file = File::open(&path).unwrap();
        let mut out = Vec::new();
        let reply = Reply::new(
            206,
            Body::File {
                file,
                start: 3,
                len: 4,
            },
        );
        send(&mut out, reply, &exchange(false, false)).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(text.contains("Connection: close\r\n"), "{text}");
        assert!(text.ends_with("\r\n\r\n3456"), "{text}");
    }

    #[test]
    fn error_pages_escape_their_message() {
        let reply = Reply::error(404, "<script>");
        let Body::Bytes(body) = reply.body else {
            panic!("bytes")
        };
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains("&lt;script&gt;") && body.contains("404 Not Found"));
    }
}
