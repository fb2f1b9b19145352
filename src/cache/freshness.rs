//! Freshness (RFC 9111 §4.2): how long a stored response stays fresh, and how old it is now.
//!
//! Both are computed from the stored head plus the times the exchange happened, never from a clock,
//! so the same inputs always give the same answer.

use std::time::{Duration, SystemTime};

use super::directives::{CacheControl, delta_seconds};
use crate::http::{Headers, ResponseHead};

/// Statuses a cache may give heuristic freshness (RFC 9110 §15.1: "heuristically cacheable").
pub(super) const HEURISTIC_STATUSES: [u16; 12] =
    [200, 203, 204, 206, 300, 301, 308, 404, 405, 410, 414, 501];

/// Upper bound on heuristic freshness (§4.2.2 suggests a tenth of the age, but not how long).
const HEURISTIC_CAP: Duration = Duration::from_secs(24 * 60 * 60);

/// RFC 9111 §4.2.1: the freshness lifetime for a shared cache, from s-maxage, else max-age, else
/// Expires minus Date, else the §4.2.2 heuristic. `response_time` stands in for a missing Date.
pub fn freshness_lifetime(resp: &ResponseHead, response_time: SystemTime) -> Duration {
    lifetime(resp, &CacheControl::parse(&resp.headers), response_time)
}

pub(super) fn lifetime(
    resp: &ResponseHead,
    cc: &CacheControl,
    response_time: SystemTime,
) -> Duration {
    if let Some(secs) = cc.s_maxage.or(cc.max_age) {
        return Duration::from_secs(secs);
    }
    let date = header_date(&resp.headers, "date").unwrap_or(response_time);
    if resp.headers.contains("expires") {
        // §5.3: an invalid Expires, notably "0", means already expired; the first field counts.
        return header_date(&resp.headers, "expires")
            .map(|expires| since(expires, date))
            .unwrap_or_default();
    }
    if !cc.public && !HEURISTIC_STATUSES.contains(&resp.status) {
        return Duration::ZERO;
    }
    match header_date(&resp.headers, "last-modified") {
        Some(modified) => (since(date, modified) / 10).min(HEURISTIC_CAP),
        None => Duration::ZERO,
    }
}

/// RFC 9111 §4.2.3: the stored response's age at `now`, from its Age and Date fields and the times the
/// request was sent and the response received.
pub fn current_age(
    resp: &ResponseHead,
    request_time: SystemTime,
    response_time: SystemTime,
    now: SystemTime,
) -> Duration {
    // §5.1: a list-valued Age uses its first member; an invalid one is ignored.
    let age_value = resp
        .headers
        .get("age")
        .and_then(|v| v.split(',').next())
        .and_then(|v| delta_seconds(v.trim()))
        .map(Duration::from_secs)
        .unwrap_or_default();
    let date = header_date(&resp.headers, "date").unwrap_or(response_time);
    let apparent_age = since(response_time, date);
    let response_delay = since(response_time, request_time);
    let corrected_age_value = age_value.saturating_add(response_delay);
    let corrected_initial_age = apparent_age.max(corrected_age_value);
    corrected_initial_age.saturating_add(since(now, response_time))
}

/// A field parsed as an HTTP-date (IMF-fixdate, RFC 850 or asctime, names in any case; RFC 9110
/// §5.6.7).
pub(super) fn header_date(headers: &Headers, name: &str) -> Option<SystemTime> {
    headers.get(name).and_then(crate::http::date::parse)
}

/// `later - earlier`, or zero when `earlier` is the later one (clock skew must not go negative).
fn since(later: SystemTime, earlier: SystemTime) -> Duration {
    later.duration_since(earlier).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cache::directives::DELTA_SECONDS_MAX;
    use crate::cache::testutil::{at, date, resp};

    fn lifetime_secs(status: u16, fields: &[(&str, &str)]) -> u64 {
        freshness_lifetime(&resp(status, fields), at(0)).as_secs()
    }

    #[test]
    fn s_maxage_beats_max_age_beats_expires() {
        let expires = date(500);
        let d = date(0);
        let all = [
            ("Date", d.as_str()),
            ("Expires", expires.as_str()),
            ("Cache-Control", "max-age=100, s-maxage=10"),
        ];
        assert_eq!(lifetime_secs(200, &all), 10);
        assert_eq!(lifetime_secs(200, &all[..2]), 500);
        let max_age = [all[0], all[1], ("Cache-Control", "max-age=100")];
        assert_eq!(lifetime_secs(200, &max_age), 100);
    }

    #[test]
    fn invalid_max_age_makes_stale_even_with_a_future_expires() {
        let expires = date(500);
        let fields = [
            ("Expires", expires.as_str()),
            ("Cache-Control", "max-age=soon"),
        ];
        assert_eq!(lifetime_secs(200, &fields), 0);
    }

    #[test]
    fn expires_counts_from_date_or_else_the_response_time() {
        let (d, e) = (date(-100), date(200));
        assert_eq!(lifetime_secs(200, &[("Date", &d), ("Expires", &e)]), 300);
        assert_eq!(lifetime_secs(200, &[("Expires", &e)]), 200);
        let before = date(-200);
        assert_eq!(
            lifetime_secs(200, &[("Date", &d), ("Expires", &before)]),
            0,
            "Expires before Date"
        );
    }

    #[test]
    fn invalid_expires_is_already_expired_and_disables_heuristics() {
        let lm = date(-100_000);
        for bad in ["0", "-1", "tomorrow", ""] {
            assert_eq!(
                lifetime_secs(200, &[("Expires", bad), ("Last-Modified", &lm)]),
                0,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn rfc850_and_asctime_dates_are_accepted() {
        // T0 is Tue, 14 Nov 2023 22:13:20 GMT.
        let rfc850 = [
            ("Date", "Tuesday, 14-Nov-23 22:13:20 GMT"),
            ("Expires", "Tuesday, 14-Nov-23 22:14:20 GMT"),
        ];
        assert_eq!(lifetime_secs(200, &rfc850), 60);
        let asctime = [
            ("Date", "Tue Nov 14 22:13:20 2023"),
            ("Expires", "Tue Nov 14 22:15:20 2023"),
        ];
        assert_eq!(lifetime_secs(200, &asctime), 120);
    }

    #[test]
    fn heuristic_is_a_tenth_of_the_time_since_last_modified_capped_at_a_day() {
        let d = date(0);
        let lm = date(-1000);
        assert_eq!(
            lifetime_secs(200, &[("Date", &d), ("Last-Modified", &lm)]),
            100
        );
        let ancient = date(-100 * 86_400);
        assert_eq!(
            lifetime_secs(200, &[("Date", &d), ("Last-Modified", &ancient)]),
            86_400
        );
        // No Date: the response time stands in.
        assert_eq!(lifetime_secs(404, &[("Last-Modified", &lm)]), 100);
        let future = date(50);
        assert_eq!(lifetime_secs(200, &[("Last-Modified", &future)]), 0);
        assert_eq!(lifetime_secs(200, &[("Date", &d)]), 0, "no Last-Modified");
    }

    #[test]
    fn heuristic_needs_a_heuristically_cacheable_status_or_public() {
        let lm = date(-1000);
        assert_eq!(lifetime_secs(302, &[("Last-Modified", &lm)]), 0);
        assert_eq!(lifetime_secs(500, &[("Last-Modified", &lm)]), 0);
        let public = [("Last-Modified", lm.as_str()), ("Cache-Control", "public")];
        assert_eq!(lifetime_secs(302, &public), 100);
        for status in [203, 204, 300, 301, 308, 405, 410, 414, 501] {
            assert_eq!(
                lifetime_secs(status, &[("Last-Modified", &lm)]),
                100,
                "{status}"
            );
        }
    }

    fn age_secs(fields: &[(&str, &str)], request: i64, response: i64, now: i64) -> u64 {
        current_age(&resp(200, fields), at(request), at(response), at(now)).as_secs()
    }

    #[test]
    fn age_is_resident_time_for_a_prompt_response_without_age() {
        let d = date(0);
        assert_eq!(age_secs(&[("Date", &d)], 0, 0, 10), 10);
        assert_eq!(age_secs(&[], 0, 0, 10), 10, "no Date: apparent age 0");
    }

    #[test]
    fn age_header_and_response_delay_add_up() {
        let d = date(0);
        assert_eq!(age_secs(&[("Date", &d), ("Age", "30")], 0, 0, 5), 35);
        // Sent at -4, received at 0: the Age is corrected by the 4 s delay.
        assert_eq!(age_secs(&[("Date", &d), ("Age", "30")], -4, 0, 5), 39);
    }

    #[test]
    fn apparent_age_from_an_old_date_wins_over_a_smaller_age() {
        let old = date(-50);
        assert_eq!(age_secs(&[("Date", &old), ("Age", "10")], 0, 0, 5), 55);
        assert_eq!(age_secs(&[("Date", &old), ("Age", "80")], 0, 0, 5), 85);
    }

    #[test]
    fn a_date_in_the_future_gives_no_negative_age() {
        let future = date(3600);
        assert_eq!(age_secs(&[("Date", &future)], 0, 0, 7), 7);
        assert_eq!(age_secs(&[], 0, 0, -7), 0, "now before the response");
    }

    #[test]
    fn invalid_age_is_ignored_and_a_list_uses_its_first_member() {
        let d = date(0);
        for (age, expected) in [
            ("abc", 0),
            ("-10", 0),
            ("1.5", 0),
            ("30, 60", 30),
            (" 20 ", 20),
        ] {
            assert_eq!(
                age_secs(&[("Date", &d), ("Age", age)], 0, 0, 0),
                expected,
                "{age:?}"
            );
        }
        assert_eq!(
            age_secs(&[("Age", "99999999999")], 0, 0, 0),
            DELTA_SECONDS_MAX
        );
    }

    #[test]
    fn obsolete_date_formats_and_wrong_case_names_are_read() {
        // T0 - 100 s and T0 + 200 s, written in the RFC 850 and asctime formats, names shouted.
        let date = "TUESDAY, 14-NOV-23 22:11:40 GMT";
        let expires = "tue nov 14 22:16:40 2023";
        assert_eq!(
            lifetime_secs(200, &[("Date", date), ("Expires", expires)]),
            300
        );
        let lm = "Tue, 14 Nov 2023 19:25:00 gmt";
        assert_eq!(
            lifetime_secs(200, &[("Date", date), ("Last-Modified", lm)]),
            1000
        );
    }
}
