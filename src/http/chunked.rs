//! The line grammar of the chunked coding (RFC 9112 §7.1): chunk-size lines with their extensions, and
//! trailer field lines. Pure functions on bytes; `body` runs the state machine that reads them.

use super::Error;

/// Parses `1a;ext=v\r\n` (RFC 9112 §7.1). Extensions are checked against the grammar and ignored.
pub(super) fn parse_chunk_size(line: &[u8]) -> Result<u64, Error> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(Error::InvalidChunk("chunk size line without crlf"))?;
    let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 15 {
        return Err(Error::InvalidChunk("invalid chunk size"));
    }
    if !is_chunk_ext(&line[digits..]) {
        return Err(Error::InvalidChunk("invalid chunk extension"));
    }
    let text = std::str::from_utf8(&line[..digits]).expect("hex digits are ascii");
    u64::from_str_radix(text, 16).map_err(|_| Error::InvalidChunk("invalid chunk size"))
}

/// `chunk-ext = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )`, where a name is a
/// token and a value a token or a quoted-string (RFC 9112 §7.1.1).
fn is_chunk_ext(mut rest: &[u8]) -> bool {
    let skip_bws =
        |s: &[u8]| -> usize { s.iter().take_while(|&&b| b == b' ' || b == b'\t').count() };
    while !rest.is_empty() {
        rest = &rest[skip_bws(rest)..];
        let Some(after_semi) = rest.strip_prefix(b";") else {
            return false;
        };
        rest = &after_semi[skip_bws(after_semi)..];
        let name = token_len(rest);
        if name == 0 {
            return false;
        }
        rest = &rest[name..];
        let ws = skip_bws(rest);
        if rest.get(ws) != Some(&b'=') {
            // No value: what follows must be another extension or the end.
            rest = &rest[ws..];
            continue;
        }
        rest = &rest[ws + 1..];
        rest = &rest[skip_bws(rest)..];
        let value = if rest.first() == Some(&b'"') {
            quoted_string_len(rest)
        } else {
            token_len(rest)
        };
        if value == 0 {
            return false;
        }
        rest = &rest[value..];
    }
    true
}

/// tchar of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn token_len(s: &[u8]) -> usize {
    s.iter().take_while(|&&b| is_tchar(b)).count()
}

/// The length of the quoted-string at the start of `s` (RFC 9110 §5.6.4), or 0 if there is none.
fn quoted_string_len(s: &[u8]) -> usize {
    let text = |b: u8| b == b'\t' || b == b' ' || (0x21..=0x7e).contains(&b) || b >= 0x80;
    let mut i = 1;
    while let Some(&b) = s.get(i) {
        match b {
            b'"' => return i + 1,
            b'\\' if s.get(i + 1).is_some_and(|&n| text(n)) => i += 2,
            b'\\' => return 0,
            b if text(b) => i += 1,
            _ => return 0,
        }
    }
    0
}

/// A trailer field line (CRLF included): `token ":" OWS value OWS`, no control bytes but HTAB, no
/// obs-fold (RFC 9112 §7.1.2, §5). Trailers are discarded, but a malformed one means the framing is
/// not what we think it is.
pub(super) fn check_trailer_field(line: &[u8]) -> Result<(), Error> {
    let line = line
        .strip_suffix(b"\r\n")
        .ok_or(Error::InvalidChunk("bare lf in trailer"))?;
    let name = token_len(line);
    if name == 0 || line.get(name) != Some(&b':') {
        return Err(Error::InvalidChunk("invalid trailer field"));
    }
    let value_ok = line[name + 1..]
        .iter()
        .all(|&b| b == b'\t' || (b >= b' ' && b != 0x7f));
    if !value_ok {
        return Err(Error::InvalidChunk("invalid trailer field"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_extensions_follow_the_grammar() {
        for good in [
            &b"5;a\r\n"[..],
            b"5 ; a = b ;c\r\n",
            b"5;a=\"q;x\\\"y\";b=\"\"\r\n",
            b"5;a=\"caf\xe9\"\r\n",
        ] {
            assert_eq!(
                parse_chunk_size(good),
                Ok(5),
                "{:?}",
                String::from_utf8_lossy(good)
            );
        }
        for bad in [
            &b"5;\r\n"[..],
            b"5;=x\r\n",
            b"5;a=\r\n",
            b"5;a b\r\n",
            b"5;a=b c\r\n",
            b"5;a=\"open\r\n",
            b"5;a=\"x\"y\r\n",
            b"5;a=\"x\\\x01\"\r\n",
            b"5;a\x00\r\n",
            b"5;a\rb\r\n",
            b" 5\r\n",
            b"0x5\r\n",
            b"-5\r\n",
        ] {
            assert!(
                parse_chunk_size(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn trailer_field_lines() {
        assert_eq!(check_trailer_field(b"X-T: 1\r\n"), Ok(()));
        assert_eq!(check_trailer_field(b"Y:\t2 \r\n"), Ok(()));
        for bad in [
            &b"X\r\n"[..],
            b": x\r\n",
            b"X : 1\r\n",
            b" folded\r\n",
            b"X: a\rb\r\n",
            b"X: 1\n",
        ] {
            assert!(
                check_trailer_field(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
