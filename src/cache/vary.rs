//! Vary (RFC 9111 §4.1): which request fields select among a URL's stored variants, and their
//! normalised values. The store builds the variant key from these and compares them; this module
//! only reads heads.

use crate::http::{RequestHead, ResponseHead, hop};

/// What a response's Vary field says about reusing it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vary {
    /// No Vary field (or only empty ones): any request for the URL matches.
    None,
    /// Lowercase field names, sorted and deduplicated.
    Headers(Vec<String>),
    /// `Vary: *`: no later request ever matches (§4.1), so the response is not worth storing.
    Any,
}

/// Reads every Vary field of `resp`.
pub fn vary(resp: &ResponseHead) -> Vary {
    let mut names: Vec<String> = Vec::new();
    for name in resp.headers.list("vary") {
        if name == "*" {
            return Vary::Any;
        }
        names.push(name.to_ascii_lowercase());
    }
    names.sort();
    names.dedup();
    if names.is_empty() {
        Vary::None
    } else {
        Vary::Headers(names)
    }
}

/// The request's normalised value for each of `names`, in the order given. Repeated fields are combined
/// as one list (RFC 9110 §5.3), elements trimmed and joined with ", ", and whitespace runs collapsed to
/// one space, so `gzip,br` and `gzip, br` select the same variant (§4.1 allows such normalisation).
///
/// A name the request does not carry is left out, so an absent field never matches a present empty
/// one (§4.1: absent only matches absent).
///
/// The values are those of the request as forwarded: a field the request's Connection names (or one
/// that is always hop-by-hop) never reaches the origin, so it counts as absent. Otherwise
/// `Accept-Language: fr` with `Connection: Accept-Language` would store the origin's answer for no
/// Accept-Language as the `fr` variant.
pub fn vary_values(req: &RequestHead, names: &[String]) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        if hop::is_stripped(&req.headers, name) {
            continue;
        }
        let mut present = false;
        let mut elements: Vec<String> = Vec::new();
        for (n, value) in req.headers.iter() {
            if !n.eq_ignore_ascii_case(name) {
                continue;
            }
            present = true;
            let value = String::from_utf8_lossy(value);
            elements.extend(
                value
                    .split(',')
                    .map(|e| e.split_ascii_whitespace().collect::<Vec<_>>().join(" "))
                    .filter(|e| !e.is_empty()),
            );
        }
        if present {
            out.push((name.to_ascii_lowercase(), elements.join(", ")));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::testutil::{req, resp};

    fn get(fields: &[(&str, &str)]) -> RequestHead {
        req("GET", fields)
    }

    #[test]
    fn vary_names_are_lowercased_sorted_and_deduplicated() {
        assert_eq!(vary(&resp(200, &[])), Vary::None);
        assert_eq!(vary(&resp(200, &[("Vary", " , ")])), Vary::None);
        assert_eq!(
            vary(&resp(
                200,
                &[
                    ("Vary", "User-Agent, accept-encoding"),
                    ("vary", "Accept-Encoding,Accept-Language")
                ]
            )),
            Vary::Headers(vec![
                "accept-encoding".into(),
                "accept-language".into(),
                "user-agent".into()
            ])
        );
    }

    #[test]
    fn vary_star_anywhere_means_any() {
        assert_eq!(vary(&resp(200, &[("Vary", "Accept, *")])), Vary::Any);
        assert_eq!(
            vary(&resp(200, &[("Vary", "Accept"), ("Vary", "*")])),
            Vary::Any
        );
    }

    #[test]
    fn vary_values_normalise_whitespace_and_combine_repeated_fields() {
        let names = vec!["accept-encoding".to_string(), "x-two".to_string()];
        let a = get(&[
            ("Accept-Encoding", "  gzip,br  "),
            ("X-Two", "a   b"),
            ("x-two", "c"),
        ]);
        let b = get(&[("accept-encoding", "gzip, br"), ("X-Two", "a b, c")]);
        let expected = [
            ("accept-encoding".to_string(), "gzip, br".to_string()),
            ("x-two".to_string(), "a b, c".to_string()),
        ];
        assert_eq!(vary_values(&a, &names), expected);
        assert_eq!(vary_values(&b, &names), expected);
    }

    #[test]
    fn absent_field_differs_from_empty_field() {
        let names = vec!["accept-language".to_string()];
        let absent = vary_values(&get(&[]), &names);
        let empty = vary_values(&get(&[("Accept-Language", "")]), &names);
        assert!(absent.is_empty());
        assert_eq!(empty, [("accept-language".to_string(), String::new())]);
        assert_ne!(absent, empty);
        let other = vary_values(&get(&[("Accept-Language", "fr")]), &names);
        assert_ne!(other, empty);
    }

    #[test]
    fn regression_vary_values_are_those_of_the_forwarded_request() {
        let names = vec!["accept-language".to_string()];
        let fr = get(&[("Accept-Language", "fr")]);
        let hop_fr = get(&[("Accept-Language", "fr"), ("Connection", "accept-language")]);
        let proxy_hop_fr = get(&[
            ("Accept-Language", "fr"),
            ("Proxy-Connection", "Accept-Language"),
        ]);
        assert_eq!(
            vary_values(&fr, &names),
            [("accept-language".into(), "fr".into())]
        );
        assert_eq!(vary_values(&hop_fr, &names), vary_values(&get(&[]), &names));
        assert_eq!(
            vary_values(&proxy_hop_fr, &names),
            Vec::<(String, String)>::new()
        );
        let te = vec!["te".to_string()];
        assert!(vary_values(&get(&[("TE", "trailers")]), &te).is_empty());
    }
}
