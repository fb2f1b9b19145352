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
            let name = name.to_ascii_lowercase();
            let value = match name.as_str() {
                "accept-language" | "accept-encoding" => {
                    preference_order(&elements).unwrap_or_else(|| elements.join(", "))
                }
                _ => elements.join(", "),
            };
            out.push((name, value));
        }
    }
    out
}

/// Accept-Language and Accept-Encoding as the choice they ask for (RFC 9110 §12.4.2, §12.5.3-4):
/// tokens are case-insensitive, and only the order of preference the q-values give matters, not
/// their numbers or the order of equal ones. So `en, de`, `DE,EN` and `de;q=1.0, en` are one
/// value, `en, de;q=0.5` and `en;q=0.9, de;q=0.2` another: groups of equal preference, best first,
/// tokens sorted within a group and groups joined by ` > `; refused tokens (`q=0`) last, marked `!`.
/// `None` (keep the plain normalisation) when an element does not parse.
fn preference_order(elements: &[String]) -> Option<String> {
    let mut ranked: Vec<(u16, String)> = Vec::with_capacity(elements.len());
    for element in elements {
        let mut params = element.split(';');
        let token = params.next()?.trim().to_ascii_lowercase();
        if token.is_empty() || token.contains(char::is_whitespace) {
            return None;
        }
        let mut q = 1000;
        for param in params {
            let (key, value) = param.split_once('=')?;
            if !key.trim().eq_ignore_ascii_case("q") {
                return None; // a parameter other than q: keep the value as sent
            }
            q = qvalue(value.trim())?;
        }
        if !ranked.iter().any(|(_, t)| *t == token) {
            ranked.push((q, token));
        }
    }
    ranked.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let mut out = String::new();
    let mut previous = None;
    for (q, token) in &ranked {
        if previous.is_some() {
            out.push_str(if previous == Some(*q) { ", " } else { " > " });
        }
        if *q == 0 {
            out.push('!');
        }
        out.push_str(token);
        previous = Some(*q);
    }
    Some(out)
}

/// A qvalue (RFC 9110 §12.4.2) in thousandths: `0`, `0.5`, `1.000`.
fn qvalue(text: &str) -> Option<u16> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !matches!(whole, "0" | "1") || fraction.len() > 3 || !digits(fraction) {
        return None;
    }
    let thousandths: u16 = format!("{fraction:0<3}").parse().ok()?;
    let q = if whole == "1" { 1000 } else { 0 } + thousandths;
    (q <= 1000).then_some(q)
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
            ("accept-encoding".to_string(), "br, gzip".to_string()),
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

    fn one(name: &str, value: &str) -> String {
        let names = vec![name.to_string()];
        vary_values(&get(&[(name, value)]), &names).remove(0).1
    }

    #[test]
    fn accept_language_ignores_case_order_and_spacing_of_equal_preferences() {
        let base = one("accept-language", "en, de");
        assert_eq!(base, "de, en");
        for same in [
            "DE, EN",
            "de,en",
            " en ,  De ",
            "en;q=1.0, de",
            "en, de, EN",
        ] {
            assert_eq!(one("accept-language", same), base, "{same}");
        }
        assert_ne!(one("accept-language", "en, fr"), base);
    }

    #[test]
    fn q_values_count_only_for_the_order_they_give() {
        let ranked = one("accept-language", "en, de;q=0.5");
        assert_eq!(ranked, "en > de");
        for same in ["en;q=0.9, de;q=0.2", "de;q=0.50, EN", "en;Q=1, de;q=0.001"] {
            assert_eq!(one("accept-language", same), ranked, "{same}");
        }
        assert_ne!(one("accept-language", "de, en;q=0.5"), ranked);
        assert_eq!(one("accept-encoding", "gzip, br;q=0"), "gzip > !br");
        assert_ne!(
            one("accept-encoding", "gzip, br;q=0"),
            one("accept-encoding", "gzip, br")
        );
    }

    #[test]
    fn unparsable_preferences_keep_the_plain_normalisation() {
        assert_eq!(one("accept-language", "en;q=2, de"), "en;q=2, de");
        assert_eq!(one("accept-encoding", "gzip;level=9"), "gzip;level=9");
        assert_eq!(one("accept-language", "en;q=0.12345"), "en;q=0.12345");
        // Other fields keep their case and order.
        assert_eq!(one("x-other", "B, a"), "B, a");
    }
}
