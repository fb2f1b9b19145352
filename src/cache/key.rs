//! Cache keys: the SHA-256 of the URL (and, for a Vary variant, of the request values it varies on),
//! stored as `ab/cdef…` under the cache folder so no directory grows past 1/256 of the entries.

use std::collections::HashMap;
use std::fmt;
use std::hash::{BuildHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A SHA-256 cache key.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key([u8; 32]);

/// A key hashes as its first 8 bytes ([`Key::short_hash`]): as even as the whole SHA-256, and a
/// quarter of the bytes to feed a hasher.
impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.short_hash());
    }
}

/// A map by key, hashed by [`KeyHasher`]: the index holds a record per entry and every hit looks
/// its key up in it and in the memory tier, where SipHash was a few percent of a hit from disk.
pub type KeyMap<V> = HashMap<Key, V, BuildKeyHasher>;

/// Makes [`KeyHasher`]s with a seed drawn once per map, so which keys share a bucket cannot be
/// worked out from their URLs (an attacker who could would make the maps' lookups slow).
#[derive(Clone)]
pub struct BuildKeyHasher(u64);

impl Default for BuildKeyHasher {
    fn default() -> Self {
        BuildKeyHasher(std::hash::RandomState::new().hash_one(0x706f_7274_6572_u64))
    }
}

impl BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(self.0)
    }
}

/// A key's short hash, its bits folded together with the map's seed by one wide multiplication
/// (as foldhash and ahash mix): every output bit depends on every input bit.
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write_u64(&mut self, value: u64) {
        let product = u128::from(value ^ self.0) * 0x9e37_79b9_7f4a_7c15;
        self.0 = (product as u64) ^ ((product >> 64) as u64);
    }

    /// Anything but a key (not used by [`KeyMap`]): eight bytes at a time.
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word));
        }
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

impl Key {
    /// The key's first 8 bytes as a number: a hash as even as the SHA-256 it is cut from.
    pub fn short_hash(&self) -> u64 {
        u64::from_le_bytes(self.0[..8].try_into().expect("8 bytes"))
    }

    /// The key of the stored response (or Vary marker) for a URL.
    pub fn for_url(url: &str) -> Key {
        Key(Sha256::digest(url.as_bytes()).into())
    }

    /// The key of one variant: the URL, the Vary marker's generation and the normalised values of the
    /// Vary request headers. The tag keeps it distinct from the URL's own key even with no values.
    pub fn for_variant(url: &str, generation: u64, values: &[(String, String)]) -> Key {
        let mut hasher = Sha256::new();
        hasher.update(url.as_bytes());
        hasher.update(b"\0variant\0");
        hasher.update(generation.to_le_bytes());
        for (name, value) in values {
            hasher.update(b"\0");
            hasher.update(name.as_bytes());
            hasher.update(b"=");
            hasher.update(value.as_bytes());
        }
        Key(hasher.finalize().into())
    }

    pub fn hex(&self) -> String {
        self.hex_str(&mut [0; 64]).to_string()
    }

    /// The key in lowercase hex, written into `out` (no allocation: a path is made per lookup).
    fn hex_str<'a>(&self, out: &'a mut [u8; 64]) -> &'a str {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        for (pair, byte) in out.chunks_exact_mut(2).zip(self.0) {
            pair[0] = DIGITS[usize::from(byte >> 4)];
            pair[1] = DIGITS[usize::from(byte & 15)];
        }
        std::str::from_utf8(out).expect("hex digits are ASCII")
    }

    /// Parses a file name back into a key (the inverse of `path`), for the start-up scan.
    pub fn from_path_parts(dir: &str, file: &str) -> Option<Key> {
        if dir.len() != 2 || file.len() != 62 {
            return None;
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(format!("{dir}{file}"), &mut bytes).ok()?;
        Some(Key(bytes))
    }

    /// Which of the 256 folders the entry is in: the first byte, `ab` in `ab/cdef…`.
    pub fn folder(&self) -> u8 {
        self.0[0]
    }

    /// `ab`, NUL-terminated in `out`: the entry's folder's name, for an `openat` from the cache
    /// folder's descriptor.
    pub fn folder_name<'a>(&self, out: &'a mut [u8; 3]) -> &'a std::ffi::CStr {
        let mut digits = [0; 64];
        self.hex_str(&mut digits);
        out[..2].copy_from_slice(&digits[..2]);
        out[2] = 0;
        std::ffi::CStr::from_bytes_with_nul(&out[..]).expect("two hex digits and a NUL")
    }

    /// `cdef…`, NUL-terminated in `out`: the entry's file name in its folder, for an `openat` from
    /// the folder's descriptor (no allocation, and a path walk of one component rather than the
    /// cache folder's whole path on every lookup).
    pub fn file_name<'a>(&self, out: &'a mut [u8; 63]) -> &'a std::ffi::CStr {
        let mut digits = [0; 64];
        self.hex_str(&mut digits);
        out[..62].copy_from_slice(&digits[2..]);
        out[62] = 0;
        std::ffi::CStr::from_bytes_with_nul(&out[..]).expect("hex digits and a NUL at the end")
    }

    /// `root/ab/cdef…`: the entry's file.
    pub fn path(&self, root: &Path) -> PathBuf {
        let mut digits = [0; 64];
        let hex = self.hex_str(&mut digits);
        let mut path = PathBuf::with_capacity(root.as_os_str().len() + 66);
        path.push(root);
        path.push(&hex[..2]);
        path.push(&hex[2..]);
        path
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", &self.hex()[..12])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_map_finds_its_keys_and_seeds_differ() {
        let keys: Vec<Key> = (0..1000)
            .map(|i| Key::for_url(&format!("http://e/{i}")))
            .collect();
        let mut map = KeyMap::default();
        for (i, key) in keys.iter().enumerate() {
            map.insert(*key, i);
        }
        assert!(keys.iter().enumerate().all(|(i, k)| map.get(k) == Some(&i)));
        assert_eq!(map.get(&Key::for_url("http://e/1000")), None);
        let (a, b) = (BuildKeyHasher::default(), BuildKeyHasher::default());
        assert_ne!(a.hash_one(keys[0]), b.hash_one(keys[0]));
    }

    #[test]
    fn keys_are_sha256_hex_with_fan_out() {
        let key = Key::for_url("http://example.com/");
        assert_eq!(key.hex().len(), 64);
        assert_eq!(key.hex(), hex::encode(key.0));
        let path = key.path(Path::new("/c"));
        let hex = key.hex();
        assert_eq!(path, Path::new("/c").join(&hex[..2]).join(&hex[2..]));
        let folder = key.folder_name(&mut [0; 3]).to_str().unwrap().to_string();
        let file = key.file_name(&mut [0; 63]).to_str().unwrap().to_string();
        assert_eq!(Path::new("/c").join(folder).join(file), path);
        assert_eq!(format!("{:02x}", key.folder()), hex[..2]);
        assert_eq!(Key::from_path_parts(&hex[..2], &hex[2..]), Some(key));
        assert_eq!(Key::from_path_parts("zz", &hex[2..]), None);
        let a = Key::for_variant("http://e/", 1, &[("accept-encoding".into(), "gzip".into())]);
        let b = Key::for_variant("http://e/", 1, &[("accept-encoding".into(), "br".into())]);
        assert_ne!(a, b);
        assert_ne!(a, Key::for_url("http://e/"));
        assert_ne!(
            Key::for_variant("http://e/", 1, &[]),
            Key::for_url("http://e/")
        );
        assert_ne!(
            Key::for_variant("http://e/", 1, &[]),
            Key::for_variant("http://e/", 2, &[])
        );
    }
}
