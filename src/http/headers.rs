//! An ordered, case-insensitive header list that keeps duplicates, as HTTP requires.

/// Header fields in the order received. Names are stored as sent; lookups ignore ASCII case.
/// Values are bytes because RFC 9110 §5.5 allows obs-text; `get` gives the ones that are UTF-8.
///
/// All names share one string and all values one buffer, with a small index of ranges: a parsed or
/// cloned head costs three allocations, not two per field (measured: allocation was the largest
/// user-space cost of a forwarded request).
#[derive(Clone, Default)]
pub struct Headers {
    names: String,
    values: Vec<u8>,
    fields: Vec<Field>,
}

/// Where one field's name and value sit in the shared storage.
#[derive(Debug, Clone, Copy)]
struct Field {
    name: (u32, u32),
    value: (u32, u32),
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    /// An empty list with room for `fields` fields of these total name and value lengths.
    pub fn with_capacity(fields: usize, name_bytes: usize, value_bytes: usize) -> Self {
        Headers {
            names: String::with_capacity(name_bytes),
            values: Vec::with_capacity(value_bytes),
            fields: Vec::with_capacity(fields),
        }
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    fn name_of(&self, field: &Field) -> &str {
        &self.names[field.name.0 as usize..field.name.1 as usize]
    }

    fn value_of(&self, field: &Field) -> &[u8] {
        &self.values[field.value.0 as usize..field.value.1 as usize]
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields
            .iter()
            .map(|f| (self.name_of(f), self.value_of(f)))
    }

    /// Every field of this name, as raw bytes.
    fn values_named<'a, 'n>(
        &'a self,
        name: &'n str,
    ) -> impl Iterator<Item = &'a [u8]> + use<'a, 'n> {
        self.fields
            .iter()
            .filter(move |f| self.name_of(f).eq_ignore_ascii_case(name))
            .map(|f| self.value_of(f))
    }

    /// Appends a field, keeping any existing ones of the same name.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        let (name, value) = (name.as_ref(), value.as_ref());
        let name_start = self.names.len() as u32;
        self.names.push_str(name);
        let value_start = self.values.len() as u32;
        self.values.extend_from_slice(value);
        self.fields.push(Field {
            name: (name_start, self.names.len() as u32),
            value: (value_start, self.values.len() as u32),
        });
    }

    /// Replaces every field of this name with one value.
    pub fn set(&mut self, name: &str, value: impl AsRef<[u8]>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every field of this name; returns whether any was present. (The bytes stay in the
    /// shared storage until the list is dropped; heads are short-lived.)
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        let names = &self.names;
        self.fields
            .retain(|f| !names[f.name.0 as usize..f.name.1 as usize].eq_ignore_ascii_case(name));
        before != self.fields.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.values_named(name).next().is_some()
    }

    /// The first value of this name as raw bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.values_named(name).next()
    }

    /// The first value of this name, if it is UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All values of this name joined with ", " (RFC 9110 §5.3), as owned bytes; empty when absent.
    pub fn clone_value(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for value in self.values_named(name) {
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value);
        }
        out
    }

    /// Every UTF-8 value of this name.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.values_named(name)
            .filter_map(|v| std::str::from_utf8(v).ok())
    }

    /// The comma-separated list elements of every field of this name, trimmed (RFC 9110 §5.6.1).
    pub fn list<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.get_all(name)
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|e| !e.is_empty())
    }

    /// Whether a list-valued field contains this token, ignoring case.
    pub fn has_token(&self, name: &str, token: &str) -> bool {
        self.list(name).any(|e| e.eq_ignore_ascii_case(token))
    }
}

/// Equal when the same fields appear in the same order, however they are stored.
impl PartialEq for Headers {
    fn eq(&self, other: &Self) -> bool {
        self.iter().eq(other.iter())
    }
}

impl Eq for Headers {}

impl std::fmt::Debug for Headers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.iter().map(|(n, v)| (n, String::from_utf8_lossy(v))))
            .finish()
    }
}

impl<N: AsRef<str>, V: AsRef<[u8]>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(name, value);
        }
        headers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_ignore_case_and_keep_duplicates() {
        let mut h: Headers = [
            ("Cache-Control", "max-age=5"),
            ("cache-control", "public, no-transform"),
        ]
        .into_iter()
        .collect();
        assert_eq!(h.get("CACHE-CONTROL"), Some("max-age=5"));
        assert_eq!(
            h.list("cache-control").collect::<Vec<_>>(),
            ["max-age=5", "public", "no-transform"]
        );
        assert!(h.has_token("Cache-Control", "PUBLIC"));
        h.set("cache-control", "no-store");
        assert_eq!(h.len(), 1);
        assert!(h.remove("Cache-control"));
        assert!(h.is_empty());
    }
}
