//! The cache entry decoder on arbitrary bytes. Raw input mostly stops at the magic or a checksum, so
//! the input is also wrapped in a valid prefix (magic, lengths and head CRC computed) to reach the
//! meta lines and the stored response head behind it. A decoded entry must encode back to itself.

#![no_main]

use libfuzzer_sys::fuzz_target;
use porter::cache::entry::{self, Decoded};

fuzz_target!(|data: &[u8]| {
    let _ = entry::decode(&mut &data[..], data.len() as u64);
    // Claimed file lengths that disagree with the bytes must be refused, not trusted.
    let _ = entry::decode(&mut &data[..], u64::MAX);
    let _ = entry::decode(&mut &data[..], data.len() as u64 / 2);

    let Some((&body_len, head)) = data.split_first() else {
        return;
    };
    let body = vec![b'x'; usize::from(body_len)];
    let file = wrap(head, &body);
    if let Ok(decoded) = entry::decode(&mut &file[..], file.len() as u64) {
        assert_eq!(decoded.body_len, u64::from(body_len));
        assert_eq!(&file[decoded.body_offset as usize..], &body[..]);
        round_trip(&decoded);
    }
});

/// A file with a correct prefix around `head` and `body`.
fn wrap(head: &[u8], body: &[u8]) -> Vec<u8> {
    let mut file = entry::encode_prefix(head, body.len() as u64, 0).to_vec();
    file.extend_from_slice(head);
    file.extend_from_slice(body);
    file
}

fn round_trip(decoded: &Decoded) {
    let head = entry::encode_head(&decoded.url, &decoded.stored);
    let file = wrap(&head, b"");
    let again = entry::decode(&mut &file[..], file.len() as u64).expect("an encoded entry decodes");
    assert_eq!(again.url, decoded.url);
    assert_eq!(again.stored, decoded.stored);
}
