//! The on-disk format of one cache entry, and its checks.
//!
//! ```text
//!  offset 0   "PORTERC1"                 magic and format version
//!         8   head length      u32 LE
//!        12   head CRC-32      u32 LE
//!        16   body length      u64 LE
//!        24   body CRC-32      u32 LE
//!        28   head: "url: …\r\n" meta lines, a blank line, then the response head as HTTP/1.1 text
//!   28+head   body bytes (decoded payload, no transfer coding)
//! ```
//! A reader trusts nothing: a wrong magic, head CRC, or file size makes the entry a miss, and the body
//! CRC is checked before a body is first served from a file.

use std::io::{self, Read};
use std::time::{Duration, SystemTime};

use crate::http::{self, Limits, ResponseHead};

pub const MAGIC: &[u8; 8] = b"PORTERC1";
pub const PREFIX_LEN: usize = 28;
/// Largest head we write or accept.
pub const MAX_HEAD: usize = 96 * 1024;

/// What is stored under a key: a response, or a marker saying which request headers pick the variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    Response(ResponseMeta),
    /// The URL's responses vary on these request headers (lowercase); variants live under their own
    /// keys, which include the marker's generation: removing the marker orphans every variant at once.
    VaryMarker {
        names: Vec<String>,
        generation: u64,
    },
}

/// A stored response's head and the facts the policy needs about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseMeta {
    pub head: ResponseHead,
    /// When the request that fetched it was sent, and when the response arrived (RFC 9111 §4.2.3).
    pub request_time: SystemTime,
    pub response_time: SystemTime,
    /// The request's values of the headers named by Vary, to check a variant really matches.
    pub vary_values: Vec<(String, String)>,
}

/// The decoded fixed prefix and head of an entry file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    pub url: String,
    pub stored: Stored,
    pub body_len: u64,
    pub body_crc: u32,
    /// Where the body starts in the file.
    pub body_offset: u64,
}

/// Why an entry file is not usable.
#[derive(Debug)]
pub enum EntryError {
    Io(io::Error),
    /// Bad magic, checksum, length or syntax: the file is damaged and should be removed.
    Corrupt(&'static str),
}

impl std::fmt::Display for EntryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryError::Io(e) => write!(f, "cache entry unreadable: {e}"),
            EntryError::Corrupt(why) => write!(f, "cache entry damaged: {why}"),
        }
    }
}

impl From<io::Error> for EntryError {
    fn from(e: io::Error) -> Self {
        EntryError::Io(e)
    }
}

/// Serialises the head part (meta lines and the response head).
pub fn encode_head(url: &str, stored: &Stored) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(b"url: ");
    out.extend_from_slice(url.as_bytes());
    out.extend_from_slice(b"\r\n");
    match stored {
        Stored::VaryMarker { names, generation } => {
            out.extend_from_slice(b"vary-marker: ");
            out.extend_from_slice(names.join(",").as_bytes());
            out.extend_from_slice(format!("\r\nvary-generation: {generation}\r\n\r\n").as_bytes());
        }
        Stored::Response(meta) => {
            let line = format!(
                "request-time: {}\r\nresponse-time: {}\r\n",
                unix_millis(meta.request_time),
                unix_millis(meta.response_time)
            );
            out.extend_from_slice(line.as_bytes());
            for (name, value) in &meta.vary_values {
                out.extend_from_slice(format!("vary-value: {name}={value}\r\n").as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            http::write::response_head(&mut out, &meta.head);
        }
    }
    out
}

/// The fixed prefix for a head and a body of known length and checksum.
pub fn encode_prefix(head: &[u8], body_len: u64, body_crc: u32) -> [u8; PREFIX_LEN] {
    let mut prefix = [0u8; PREFIX_LEN];
    prefix[..8].copy_from_slice(MAGIC);
    prefix[8..12].copy_from_slice(&(head.len() as u32).to_le_bytes());
    prefix[16..24].copy_from_slice(&body_len.to_le_bytes());
    prefix[24..28].copy_from_slice(&body_crc.to_le_bytes());
    let crc = head_checksum(&prefix, head);
    prefix[12..16].copy_from_slice(&crc.to_le_bytes());
    prefix
}

/// Reads and checks the prefix and head from the start of an entry file of `file_len` bytes.
pub fn decode(reader: &mut impl Read, file_len: u64) -> Result<Decoded, EntryError> {
    let mut prefix = [0u8; PREFIX_LEN];
    reader
        .read_exact(&mut prefix)
        .map_err(|_| EntryError::Corrupt("short file"))?;
    let fixed = Prefix::check(&prefix, file_len)?;
    let mut head = vec![0u8; fixed.head_len];
    reader
        .read_exact(&mut head)
        .map_err(|_| EntryError::Corrupt("short head"))?;
    fixed.decode(&prefix, &head)
}

/// [`decode`] of an entry file read whole into `file`, its head decoded where it lies (no copy).
pub fn decode_slice(file: &[u8]) -> Result<Decoded, EntryError> {
    let prefix: &[u8; PREFIX_LEN] = file
        .first_chunk()
        .ok_or(EntryError::Corrupt("short file"))?;
    let fixed = Prefix::check(prefix, file.len() as u64)?;
    // The check above made sure the head (and the body after it) lies within the file.
    let head = file
        .get(PREFIX_LEN..PREFIX_LEN + fixed.head_len)
        .ok_or(EntryError::Corrupt("short head"))?;
    fixed.decode(prefix, head)
}

/// The length of the entry file whose first bytes are `start`, as its prefix says: `None` until
/// `start` holds the prefix, or when the prefix is not an entry's. Unchecked: what it says is
/// checked when the file is decoded.
pub fn claimed_len(start: &[u8]) -> Option<u64> {
    let fixed = Prefix::read(start.first_chunk()?)?;
    fixed.body_offset().checked_add(fixed.body_len)
}

/// The fixed prefix's fields, checked against the file's length.
struct Prefix {
    head_len: usize,
    head_crc: u32,
    body_len: u64,
    body_crc: u32,
}

impl Prefix {
    /// The fields, unchecked; `None` without the magic.
    fn read(prefix: &[u8; PREFIX_LEN]) -> Option<Prefix> {
        if &prefix[..8] != MAGIC {
            return None;
        }
        Some(Prefix {
            head_len: u32::from_le_bytes(prefix[8..12].try_into().expect("4 bytes")) as usize,
            head_crc: u32::from_le_bytes(prefix[12..16].try_into().expect("4 bytes")),
            body_len: u64::from_le_bytes(prefix[16..24].try_into().expect("8 bytes")),
            body_crc: u32::from_le_bytes(prefix[24..28].try_into().expect("4 bytes")),
        })
    }

    fn check(prefix: &[u8; PREFIX_LEN], file_len: u64) -> Result<Prefix, EntryError> {
        let fixed = Prefix::read(prefix).ok_or(EntryError::Corrupt("bad magic"))?;
        if fixed.head_len > MAX_HEAD {
            return Err(EntryError::Corrupt("head too large"));
        }
        if fixed.body_offset().checked_add(fixed.body_len) != Some(file_len) {
            return Err(EntryError::Corrupt("file length does not match"));
        }
        Ok(fixed)
    }

    fn body_offset(&self) -> u64 {
        (PREFIX_LEN + self.head_len) as u64
    }

    /// Checks the head against its checksum and decodes it.
    fn decode(&self, prefix: &[u8; PREFIX_LEN], head: &[u8]) -> Result<Decoded, EntryError> {
        if head_checksum(prefix, head) != self.head_crc {
            return Err(EntryError::Corrupt("head checksum mismatch"));
        }
        let (url, stored) = decode_head(head)?;
        Ok(Decoded {
            url,
            stored,
            body_len: self.body_len,
            body_crc: self.body_crc,
            body_offset: self.body_offset(),
        })
    }
}

fn decode_head(head: &[u8]) -> Result<(String, Stored), EntryError> {
    let bad = EntryError::Corrupt;
    let text = |bytes| std::str::from_utf8(bytes).map_err(|_| bad("meta not utf-8"));
    let mut url = None;
    let mut marker = None;
    let mut generation = None;
    let mut request_time = None;
    let mut response_time = None;
    let mut vary_values = Vec::new();
    // Meta lines up to an empty one, each `name: value` and CRLF (byte by byte: a hit from disk
    // decodes one head, and str's pattern searches cost more than the few lines they split).
    let mut rest = head;
    let response_bytes = loop {
        let end = rest
            .iter()
            .position(|&b| b == b'\r')
            .ok_or(bad("no end of meta"))?;
        if rest.get(end + 1) != Some(&b'\n') {
            return Err(bad("meta line"));
        }
        let (line, after) = (&rest[..end], &rest[end + 2..]);
        rest = after;
        if line.is_empty() {
            break rest;
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .filter(|&i| line.get(i + 1) == Some(&b' '))
            .ok_or(bad("meta line"))?;
        let (name, value) = (&line[..colon], text(&line[colon + 2..])?);
        match name {
            b"url" => url = Some(value.to_string()),
            b"vary-marker" => {
                marker = Some(
                    value
                        .split(',')
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                        .collect(),
                )
            }
            b"vary-generation" => {
                generation = Some(value.parse::<u64>().map_err(|_| bad("vary-generation"))?)
            }
            b"request-time" => request_time = Some(parse_millis(value).ok_or(bad("request-time"))?),
            b"response-time" => {
                response_time = Some(parse_millis(value).ok_or(bad("response-time"))?)
            }
            b"vary-value" => {
                let (n, v) = value.split_once('=').ok_or(bad("vary-value"))?;
                vary_values.push((n.to_string(), v.to_string()));
            }
            _ => return Err(bad("unknown meta field")),
        }
    };
    let url = url.ok_or(bad("no url"))?;
    if let Some(names) = marker {
        let generation = generation.ok_or(bad("no vary-generation"))?;
        return Ok((url, Stored::VaryMarker { names, generation }));
    }
    let (head, len) = http::parse::response(
        response_bytes,
        &Limits {
            max_head_bytes: MAX_HEAD,
            ..Limits::default()
        },
    )
    .map_err(|_| bad("stored response head"))?
    .ok_or(bad("stored response head incomplete"))?;
    if len != response_bytes.len() {
        return Err(bad("bytes after stored head"));
    }
    Ok((
        url,
        Stored::Response(ResponseMeta {
            head,
            request_time: request_time.ok_or(bad("no request-time"))?,
            response_time: response_time.ok_or(bad("no response-time"))?,
            vary_values,
        }),
    ))
}

/// The head checksum also covers the body length and checksum fields, so no prefix byte goes unchecked.
fn head_checksum(prefix: &[u8; PREFIX_LEN], head: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&prefix[16..28]);
    hasher.update(head);
    hasher.finalize()
}

fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn parse_millis(text: &str) -> Option<SystemTime> {
    text.parse::<u64>()
        .ok()
        .and_then(|ms| SystemTime::UNIX_EPOCH.checked_add(Duration::from_millis(ms)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (String, Stored) {
        let mut head = ResponseHead::new(200);
        head.headers.append("Content-Type", "text/plain");
        head.headers.append("ETag", "\"v1\"");
        let t = SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let meta = ResponseMeta {
            head,
            request_time: t,
            response_time: t + Duration::from_millis(5),
            vary_values: vec![("accept-encoding".into(), "gzip".into())],
        };
        ("http://example.com/a".into(), Stored::Response(meta))
    }

    fn file_bytes(url: &str, stored: &Stored, body: &[u8]) -> Vec<u8> {
        let head = encode_head(url, stored);
        let mut file = encode_prefix(&head, body.len() as u64, crc32fast::hash(body)).to_vec();
        file.extend_from_slice(&head);
        file.extend_from_slice(body);
        file
    }

    #[test]
    fn round_trips_responses_and_markers() {
        let (url, stored) = sample();
        let file = file_bytes(&url, &stored, b"hello");
        let decoded = decode(&mut &file[..], file.len() as u64).unwrap();
        assert_eq!(
            (decoded.url.as_str(), &decoded.stored),
            (url.as_str(), &stored)
        );
        assert_eq!(decoded.body_len, 5);
        assert_eq!(&file[decoded.body_offset as usize..], b"hello");
        assert_eq!(decode_slice(&file).unwrap(), decoded);
        let marker = Stored::VaryMarker {
            names: vec!["accept".into(), "accept-encoding".into()],
            generation: 42,
        };
        let file = file_bytes(&url, &marker, b"");
        assert_eq!(
            decode(&mut &file[..], file.len() as u64).unwrap().stored,
            marker
        );
    }

    #[test]
    fn malformed_meta_lines_with_a_good_checksum_are_damage() {
        let response = b"HTTP/1.1 200 OK\r\n\r\n";
        let times = "request-time: 1\r\nresponse-time: 2\r\n";
        let good = format!("url: http://e/\r\n{times}\r\n");
        let bad = [
            format!("url http://e/\r\n{times}\r\n"),
            format!("url:http://e/\r\n{times}\r\n"),
            format!("url: http://e/\rx\r\n{times}\r\n"),
            format!("url: http://e/\n{times}\r\n"),
            format!("url: http://e/\r\n{times}"),
            format!("{times}\r\n"),
            format!("url: http://e/\r\nsurprise: 1\r\n{times}\r\n"),
            "\r\n".to_string(),
        ];
        let decoded = |meta: &str| {
            let mut head = meta.as_bytes().to_vec();
            head.extend_from_slice(response);
            let mut file = encode_prefix(&head, 0, crc32fast::hash(b"")).to_vec();
            file.extend_from_slice(&head);
            (
                decode_slice(&file),
                decode(&mut &file[..], file.len() as u64),
            )
        };
        let (whole, read) = decoded(&good);
        assert_eq!(whole.unwrap().url, "http://e/");
        assert_eq!(read.unwrap().url, "http://e/");
        for meta in bad {
            let (whole, read) = decoded(&meta);
            assert!(matches!(whole, Err(EntryError::Corrupt(_))), "{meta:?}");
            assert!(matches!(read, Err(EntryError::Corrupt(_))), "{meta:?}");
        }
    }

    #[test]
    fn damage_anywhere_in_the_head_or_length_is_detected() {
        let (url, stored) = sample();
        let file = file_bytes(&url, &stored, b"hello");
        let head_end = file.len() - 5;
        for i in 0..head_end {
            let mut damaged = file.clone();
            damaged[i] ^= 0x20;
            assert!(
                decode(&mut &damaged[..], damaged.len() as u64).is_err(),
                "flip at {i} undetected"
            );
            assert!(decode_slice(&damaged).is_err(), "flip at {i} undetected");
        }
        assert!(decode(&mut &file[..file.len() - 1], file.len() as u64 - 1).is_err());
        assert!(decode(&mut &b"garbage"[..], 7).is_err());
        for len in 0..file.len() {
            assert!(decode_slice(&file[..len]).is_err(), "cut to {len} bytes");
        }
    }
}
