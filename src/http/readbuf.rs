//! A read buffer that remembers bytes received but not yet consumed, so a head parser can ask for more
//! and a body reader can take over exactly where the head ended.

use std::io::{self, Read};

/// Bytes read from a peer and not yet consumed, bounded by a capacity. Memory is taken at the first
/// read and grows from a small start up to the capacity only when a message needs it, so thousands
/// of idle connections stay cheap. A buffer of the first size goes, when its connection ends, to a
/// pool of the thread's ([`spare`]) for the next connection: a new connection's buffer costs no
/// allocation and no zeroing (4 KiB zeroed was an eighth of a new connection's instructions).
pub struct ReadBuf {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    capacity: usize,
}

/// What a buffer starts with; most request heads fit.
const INITIAL: usize = 4 * 1024;

impl ReadBuf {
    /// A buffer holding at most `capacity` unconsumed bytes.
    pub fn with_capacity(capacity: usize) -> Self {
        ReadBuf {
            bytes: Vec::new(),
            start: 0,
            end: 0,
            capacity,
        }
    }

    /// Gives back memory grown for a large message, once it has been consumed. A buffer of the
    /// first size is kept: the connection's next request would take one again at once.
    pub fn shrink(&mut self) {
        if self.is_empty() && self.bytes.len() > INITIAL.min(self.capacity) {
            self.bytes = Vec::new();
        }
    }

    /// The unconsumed bytes.
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..self.end]
    }

    pub fn is_empty(&self) -> bool {
        self.start == self.end
    }

    pub fn len(&self) -> usize {
        self.end - self.start
    }

    /// The most unconsumed bytes it holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Whether the buffer is full, so a parser still waiting for more must give up.
    pub fn is_full(&self) -> bool {
        self.len() >= self.capacity
    }

    /// Marks `n` bytes as used.
    pub fn consume(&mut self, n: usize) {
        assert!(n <= self.len(), "consumed more than buffered");
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    /// Reads once from `source` into the free space; returns the byte count (0 at end of stream).
    /// A full buffer reads nothing and returns `Ok(0)`; check [`ReadBuf::is_full`] first.
    pub fn fill_from(&mut self, source: &mut impl Read) -> io::Result<usize> {
        if self.end == self.bytes.len() && self.start > 0 {
            self.bytes.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.bytes.len() {
            if self.bytes.len() >= self.capacity {
                return Ok(0);
            }
            if self.bytes.is_empty() {
                self.bytes = spare::take(INITIAL.min(self.capacity));
            } else {
                let grown = (self.bytes.len() * 4).clamp(INITIAL, self.capacity);
                self.bytes.resize(grown, 0);
            }
        }
        let n = source.read(&mut self.bytes[self.end..])?;
        self.end += n;
        Ok(n)
    }

    /// Copies buffered bytes into `out`, up to `limit`; returns how many.
    pub fn take_into(&mut self, out: &mut [u8], limit: usize) -> usize {
        let n = self.len().min(out.len()).min(limit);
        out[..n].copy_from_slice(&self.bytes[self.start..self.start + n]);
        self.consume(n);
        n
    }
}

/// Sizes only: a pooled buffer holds an earlier peer's bytes beyond what it read itself, and what it
/// read is a peer's (cookies, credentials), not a log's.
impl std::fmt::Debug for ReadBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadBuf")
            .field("unconsumed", &self.len())
            .field("allocated", &self.bytes.len())
            .field("capacity", &self.capacity)
            .finish()
    }
}

impl Drop for ReadBuf {
    fn drop(&mut self) {
        spare::give(std::mem::take(&mut self.bytes));
    }
}

/// Each thread's buffers of the first size, kept for its next connections. A buffer holds bytes of
/// an earlier peer beyond its filled part; [`ReadBuf`] only ever shows what it read itself
/// (`start..end`).
mod spare {
    use std::cell::RefCell;

    use super::INITIAL;

    /// Buffers kept per thread (256 KiB).
    const KEPT: usize = 64;

    thread_local! {
        static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    }

    /// A buffer of `len` bytes, from the pool when it is the pool's size.
    pub fn take(len: usize) -> Vec<u8> {
        if len == INITIAL
            && let Some(bytes) = SPARE.with_borrow_mut(Vec::pop)
        {
            return bytes;
        }
        vec![0; len]
    }

    /// Keeps `bytes` for [`take`] if it is of the pool's size and the pool has room.
    pub fn give(bytes: Vec<u8>) {
        if bytes.len() == INITIAL {
            // A thread being torn down has no pool left: the buffer is simply freed.
            let _ = SPARE.try_with(|spare| {
                let mut spare = spare.borrow_mut();
                if spare.len() < KEPT {
                    spare.push(bytes);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fills_consumes_and_compacts() {
        let mut buf = ReadBuf::with_capacity(8);
        let mut src: &[u8] = b"abcdefghij";
        assert_eq!(buf.fill_from(&mut src).unwrap(), 8);
        assert!(buf.is_full());
        assert_eq!(buf.fill_from(&mut src).unwrap(), 0);
        buf.consume(3);
        assert_eq!(buf.data(), b"defgh");
        assert_eq!(buf.fill_from(&mut src).unwrap(), 2);
        assert_eq!(buf.data(), b"defghij");
        buf.consume(7);
        buf.shrink();
        let mut src: &[u8] = b"de";
        buf.fill_from(&mut src).unwrap();
        let mut out = [0u8; 4];
        assert_eq!(buf.take_into(&mut out, 2), 2);
        assert_eq!(&out[..2], b"de");
    }

    #[test]
    fn grows_only_when_needed_up_to_its_capacity() {
        let mut buf = ReadBuf::with_capacity(64 * 1024);
        assert_eq!(buf.bytes.len(), 0, "no memory before the first read");
        let big = vec![7u8; 100 * 1024];
        let mut src: &[u8] = &big;
        while !buf.is_full() {
            assert!(buf.fill_from(&mut src).unwrap() > 0);
        }
        assert_eq!(buf.len(), 64 * 1024);
        assert_eq!(buf.fill_from(&mut src).unwrap(), 0);
        buf.consume(buf.len());
        buf.shrink();
        assert_eq!(buf.bytes.len(), 0, "the grown buffer is given back");
        let mut src: &[u8] = b"next";
        assert_eq!(buf.fill_from(&mut src).unwrap(), 4);
        assert_eq!((buf.data(), buf.bytes.len()), (&b"next"[..], INITIAL));
    }

    /// A buffer from the pool still holds an earlier peer's bytes; none of them may show.
    #[test]
    fn a_reused_buffer_shows_only_what_it_read() {
        let mut first = ReadBuf::with_capacity(64 * 1024);
        let secret = vec![b's'; INITIAL];
        let mut src: &[u8] = &secret;
        assert_eq!(first.fill_from(&mut src).unwrap(), INITIAL);
        drop(first);
        let mut second = ReadBuf::with_capacity(64 * 1024);
        let mut src: &[u8] = b"GET";
        assert_eq!(second.fill_from(&mut src).unwrap(), 3);
        assert_eq!(second.data(), b"GET");
        let mut out = [0u8; 16];
        assert_eq!(second.take_into(&mut out, 16), 3);
        assert_eq!(&out[..3], b"GET");
        assert!(second.is_empty());
    }
}
