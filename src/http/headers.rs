//! An ordered, case-insensitive header list that keeps duplicates, as HTTP requires.

/// Header fields in the order received. Names are stored as sent; lookups ignore ASCII case.
/// Values are bytes because RFC 9110 §5.5 allows obs-text; `get` gives the ones that are UTF-8.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers {
    fields: Vec<(String, Vec<u8>)>,
}

impl Headers {
    pub fn new() -> Self {
        Headers::default()
    }

    pub fn len(&self) -> usize {
        self.fields.len()
    }

    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.fields.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// Appends a field, keeping any existing ones of the same name.
    pub fn append(&mut self, name: impl Into<String>, value: impl Into<Vec<u8>>) {
        self.fields.push((name.into(), value.into()));
    }

    /// Replaces every field of this name with one value.
    pub fn set(&mut self, name: &str, value: impl Into<Vec<u8>>) {
        self.remove(name);
        self.append(name, value);
    }

    /// Removes every field of this name; returns whether any was present.
    pub fn remove(&mut self, name: &str) -> bool {
        let before = self.fields.len();
        self.fields.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        before != self.fields.len()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.fields
            .iter()
            .any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The first value of this name as raw bytes.
    pub fn get_bytes(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_slice())
    }

    /// The first value of this name, if it is UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_bytes(name)
            .and_then(|v| std::str::from_utf8(v).ok())
    }

    /// All values of this name joined with ", " (RFC 9110 §5.3), as owned bytes; empty when absent.
    pub fn clone_value(&self, name: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (_, value) in self
            .fields
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
        {
            if !out.is_empty() {
                out.extend_from_slice(b", ");
            }
            out.extend_from_slice(value);
        }
        out
    }

    /// Every UTF-8 value of this name.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.fields
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .filter_map(|(_, v)| std::str::from_utf8(v).ok())
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

impl<N: Into<String>, V: Into<Vec<u8>>> FromIterator<(N, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (N, V)>>(iter: I) -> Self {
        Headers {
            fields: iter
                .into_iter()
                .map(|(n, v)| (n.into(), v.into()))
                .collect(),
        }
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
