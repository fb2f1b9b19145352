//! FNV-1a, an unkeyed hash for short keys in tables no client can grow without bound (the host
//! labels of `/metrics`, a thread's table of recent URLs): a keyed SipHash buys nothing there and
//! costs every request.

use std::hash::Hasher;

const OFFSET_BASIS: u64 = 0xcbf2_9ce4_8422_2325;
const PRIME: u64 = 0x0000_0100_0000_01b3;

/// A [`Hasher`], for `HashMap`s through `BuildHasherDefault<Fnv1a>` and for hashing by hand.
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Fnv1a {
        Fnv1a(OFFSET_BASIS)
    }
}

impl Hasher for Fnv1a {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(PRIME);
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published FNV-1a 64-bit values.
    #[test]
    fn matches_the_reference_values() {
        let hash = |text: &[u8]| {
            let mut hasher = Fnv1a::default();
            hasher.write(text);
            hasher.finish()
        };
        assert_eq!(hash(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(hash(b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(hash(b"foobar"), 0x8594_4171_f739_67e8);
    }
}
