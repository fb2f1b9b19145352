//! The file server: GET and HEAD of files under `--root`, with validators, conditional requests and
//! single byte ranges, and directories as their `index.html` or a plain listing.
//!
//! ```text
//!  path ─> path::RequestPath (decode, normalise) ─> path::resolve (inside the root, symlinks too)
//!       ├─ directory without '/' ─> 301 to the '/' form, so relative links work
//!       ├─ directory ─> index.html if there is one, else a listing
//!       ├─ regular file, readable by others ─> 304 | 412 | 206 | 416 | 200, body streamed from disk
//!       └─ not readable by others (mode & 0o004 == 0), or not a regular file ─> 403
//!          (for a folder, only its listing needs it: an index.html is checked as a file)
//!  hidden (the server's state files; dotfiles unless --allow-dotfiles) ─> 404, left out of listings
//! ```
//! "Readable by others" is the rule because the server may run as the files' owner: a file its owner
//! keeps private should stay private even from a server that could read it.

use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::conditional::{self, Precondition, RangeRequest, Validators};
use super::hidden::Hidden;
use super::path::{self, PathError, RequestPath};
use super::reply::{Body, Reply};
use crate::html;
use crate::http::{Method, RequestHead};

/// Most entries a listing shows.
const MAX_LISTING: usize = 10_000;

/// Characters escaped in a listing's links: all but unreserved ones (RFC 3986 §2.3).
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Answers a GET or HEAD for `target_path` (the path part of the target, still encoded). What
/// `hidden` hides answers 404, as if it were not there.
pub fn serve(root: &Path, hidden: &Hidden, req: &RequestHead, target_path: &str) -> Reply {
    let request_path = match RequestPath::parse(target_path) {
        Ok(p) => p,
        Err(e) => return Reply::error(e.status(), e.as_str()),
    };
    if hidden.hides_segments(&request_path.segments) {
        return not_found();
    }
    let relative = request_path.relative();
    let found = match path::resolve(root, &relative) {
        Ok(p) if hidden.hides(root, &p) => return not_found(),
        Ok(p) => p,
        Err(e) => return Reply::error(e.status(), e.as_str()),
    };
    let meta = match fs::metadata(&found) {
        Ok(m) => m,
        Err(e) => return io_error(&e),
    };
    if meta.is_file() {
        return serve_file(req, &found, &meta);
    }
    if !meta.is_dir() {
        return Reply::error(403, "not a regular file");
    }
    if !request_path.trailing_slash && !request_path.is_root() {
        // Built from the normalised segments, so `//host/dir` cannot become an off-site redirect.
        let location = link(&request_path);
        return Reply::page(301, "Moved Permanently", &format!("see {location}"))
            .header("Location", location);
    }
    match path::resolve(root, &relative.join("index.html")) {
        Ok(index) if hidden.hides(root, &index) => {}
        Ok(index) => {
            if let Ok(m) = fs::metadata(&index)
                && m.is_file()
            {
                return serve_file(req, &index, &m);
            }
        }
        Err(PathError::NotFound) => {}
        Err(e) => return Reply::error(e.status(), e.as_str()),
    }
    // The index file has its own permission check; a listing needs the folder readable by others.
    if !readable_by_others(&meta) {
        return Reply::error(403, "this folder is not readable by others");
    }
    listing(&found, &request_path, hidden)
}

fn not_found() -> Reply {
    Reply::error(404, "no such file")
}

fn readable_by_others(meta: &Metadata) -> bool {
    meta.permissions().mode() & 0o004 != 0
}

fn io_error(e: &io::Error) -> Reply {
    match e.kind() {
        io::ErrorKind::NotFound => Reply::error(404, "no such file"),
        io::ErrorKind::PermissionDenied => Reply::error(403, "the file cannot be read"),
        _ => {
            log::warn!("file error: {e}");
            Reply::error(500, "the file could not be read")
        }
    }
}

fn serve_file(req: &RequestHead, found: &Path, meta: &Metadata) -> Reply {
    if !readable_by_others(meta) {
        return Reply::error(403, "this file is not readable by others");
    }
    let file = match File::open(found) {
        Ok(f) => f,
        Err(e) => return io_error(&e),
    };
    // Metadata of the file actually opened, in case it changed since the path was checked.
    let meta = match file.metadata() {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Reply::error(403, "not a regular file"),
        Err(e) => return io_error(&e),
    };
    let len = meta.len();
    let validators = Validators::new(len, meta.modified().unwrap_or(std::time::UNIX_EPOCH));
    let with_validators = |reply: Reply| {
        reply
            .header("ETag", validators.etag.clone())
            .header("Last-Modified", validators.last_modified_http())
    };
    match conditional::evaluate(&req.headers, &req.method, &validators) {
        Precondition::Proceed => {}
        Precondition::NotModified => return with_validators(Reply::new(304, Body::Empty)),
        Precondition::Failed => {
            return Reply::error(412, "the file does not match the request's preconditions");
        }
    }
    let content_type = content_type(found);
    let range = if req.method == Method::Get {
        conditional::range(&req.headers, len, &validators)
    } else {
        RangeRequest::Full
    };
    let (status, start, part) = match range {
        RangeRequest::Full => (200, 0, len),
        RangeRequest::Partial { start, end } => (206, start, end - start + 1),
        RangeRequest::Unsatisfiable => {
            return with_validators(Reply::error(416, "the requested range is beyond the file"))
                .header("Content-Range", format!("bytes */{len}"));
        }
    };
    let mut reply = with_validators(Reply::new(
        status,
        Body::File {
            file,
            start,
            len: part,
        },
    ))
    .header("Content-Type", content_type)
    .header("Accept-Ranges", "bytes");
    if status == 206 {
        reply = reply.header(
            "Content-Range",
            format!("bytes {start}-{}/{len}", start + part - 1),
        );
    }
    reply
}

/// The encoded, absolute URL path of a folder, ending in `/`.
fn link(request_path: &RequestPath) -> String {
    let mut out = String::from("/");
    for segment in &request_path.segments {
        out.extend(percent_encoding::percent_encode(segment, SEGMENT));
        out.push('/');
    }
    out
}

/// A plain HTML list of a folder's entries, folders first marked with `/`.
fn listing(dir: &Path, request_path: &RequestPath, hidden: &Hidden) -> Reply {
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) => return io_error(&e),
    };
    let mut names: Vec<(String, bool)> = Vec::new();
    let mut more = 0usize;
    for entry in entries.flatten() {
        if hidden.hides_entry(dir, &entry.file_name()) {
            continue;
        }
        if names.len() >= MAX_LISTING {
            more += 1;
            continue;
        }
        let is_dir = fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
        names.push((entry.file_name().to_string_lossy().into_owned(), is_dir));
    }
    names.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let shown: String = request_path
        .segments
        .iter()
        .map(|s| format!("/{}", String::from_utf8_lossy(s)))
        .collect::<String>()
        + "/";
    let title = format!("Index of {shown}");
    let mut html = format!("<h1>{}</h1>\n<ul>\n", html::escape(&title));
    if !request_path.is_root() {
        html.push_str("<li><a href=\"../\">../</a></li>\n");
    }
    for (name, is_dir) in &names {
        let slash = if *is_dir { "/" } else { "" };
        html.push_str(&format!(
            "<li><a href=\"{}{slash}\">{}{slash}</a></li>\n",
            utf8_percent_encode(name, SEGMENT),
            html::escape(name)
        ));
    }
    html.push_str("</ul>\n");
    if more > 0 {
        html.push_str(&format!("<p>{more} more entries not shown.</p>\n"));
    }
    let html = html::document(&title, &html);
    Reply::new(200, Body::Bytes(html.into_bytes()))
        .header("Content-Type", "text/html; charset=utf-8")
}

/// The Content-Type for a file name, by extension.
pub fn content_type(path: &Path) -> &'static str {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .unwrap_or_default();
    match ext.as_str() {
        "html" | "htm" => "text/html; charset=utf-8",
        "txt" => "text/plain; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "json" => "application/json",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "gif" => "image/gif",
        "svg" => "image/svg+xml",
        "ico" => "image/vnd.microsoft.icon",
        "pdf" => "application/pdf",
        "wasm" => "application/wasm",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_types_by_extension() {
        for (name, want) in [
            ("a.html", "text/html; charset=utf-8"),
            ("A.HTM", "text/html; charset=utf-8"),
            ("b.txt", "text/plain; charset=utf-8"),
            ("c.css", "text/css; charset=utf-8"),
            ("d.js", "text/javascript; charset=utf-8"),
            ("e.json", "application/json"),
            ("f.png", "image/png"),
            ("g.jpeg", "image/jpeg"),
            ("h.gif", "image/gif"),
            ("i.svg", "image/svg+xml"),
            ("j.ico", "image/vnd.microsoft.icon"),
            ("k.pdf", "application/pdf"),
            ("l.wasm", "application/wasm"),
            ("m.tar.gz", "application/octet-stream"),
            ("Makefile", "application/octet-stream"),
        ] {
            assert_eq!(content_type(Path::new(name)), want, "{name}");
        }
    }
}
