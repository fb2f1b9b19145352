//! Heads and times for the policy tests: a fixed instant instead of the clock.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::http::{RequestHead, ResponseHead, Version};

/// A fixed "now" for tests, on a whole second (2023-11-14T22:13:20Z).
pub const T0_SECS: u64 = 1_700_000_000;

/// `T0` shifted by `offset` seconds.
pub fn at(offset: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0_SECS.checked_add_signed(offset).unwrap())
}

/// `at(offset)` as an IMF-fixdate.
pub fn date(offset: i64) -> String {
    httpdate::fmt_http_date(at(offset))
}

pub fn req(method: &str, fields: &[(&str, &str)]) -> RequestHead {
    RequestHead {
        method: method.into(),
        target: "http://example.com/r".into(),
        version: Version::Http11,
        headers: fields.iter().copied().collect(),
    }
}

pub fn resp(status: u16, fields: &[(&str, &str)]) -> ResponseHead {
    let mut r = ResponseHead::new(status);
    r.headers = fields.iter().copied().collect();
    r
}
