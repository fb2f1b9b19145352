//! The ban rule, both sides, without a clock or sockets.

use super::*;

const IP: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
const OTHER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, 2));

fn limits(ban_after: u64) -> Limits {
    Limits::new(LimitConfig {
        ban_after,
        new_visitors_per_ip: 3,
        ..LimitConfig::default()
    })
}

fn allowed(a: &Admit) -> bool {
    matches!(a, Admit::Allowed { .. })
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Requests at `times` (ms from `t`) until the first refusal; returns how many were served.
fn served_until_banned(l: &Limits, visitor: Option<&str>, times: &[u64]) -> usize {
    let t = Instant::now();
    times
        .iter()
        .take_while(|&&at| allowed(&l.admit(IP, visitor, t + ms(at))))
        .count()
}

#[test]
fn script_without_cookie_is_banned_after_the_limit() {
    let l = limits(100);
    let t = Instant::now();
    for i in 0..100 {
        assert_eq!(l.admit(IP, None, t + ms(i)), Admit::Allowed { nth: i + 1 });
    }
    let a = l.admit(IP, None, t + ms(100));
    assert!(matches!(a, Admit::Banned { new: true, .. }), "{a:?}");
    let a = l.admit(IP, None, t + Duration::from_secs(3600));
    assert!(
        matches!(a, Admit::Banned { new: false, .. }),
        "until restart"
    );
    assert!(
        allowed(&l.admit(OTHER, None, t)),
        "other addresses unaffected"
    );
    assert!(
        allowed(&l.admit(IP, Some("browser"), t + ms(200))),
        "a cookie holder behind the banned address goes on"
    );
}

#[test]
fn window_slides() {
    let l = limits(10);
    let t = Instant::now();
    // 10 requests every 61 s, for ten minutes: never more than 10 within any 60 s.
    for round in 0..10u64 {
        for i in 0..10u64 {
            let now = t + Duration::from_secs(61 * round) + ms(i);
            assert!(allowed(&l.admit(IP, None, now)));
        }
    }
}

#[test]
fn page_loads_of_120_with_a_cookie_are_never_banned_however_often_reloaded() {
    let l = limits(100);
    let t = Instant::now();
    // 120 requests within a quarter second, then 3 s of reading, for ten minutes: 2,400 a minute.
    for page in 0..200u64 {
        for i in 0..120u64 {
            let now = t + Duration::from_secs(3 * page) + ms(2 * i);
            let a = l.admit(IP, Some("visitor"), now);
            assert!(allowed(&a), "page {page} request {i}: {a:?}");
        }
    }
}

#[test]
fn hammering_with_a_cookie_is_banned_and_only_that_cookie() {
    let l = limits(100);
    let every_10ms: Vec<u64> = (0..1000).map(|i| i * 10).collect();
    assert_eq!(served_until_banned(&l, Some("bot"), &every_10ms), 300);
    let t = Instant::now() + Duration::from_secs(20);
    let a = l.admit(IP, Some("bot"), t);
    assert!(
        matches!(&a, Admit::Banned { ban, new: false } if ban.scope == BanScope::Visitor),
        "{a:?}"
    );
    assert!(allowed(&l.admit(IP, Some("browser"), t)), "another visitor");
    assert!(allowed(&l.admit(IP, None, t)), "a cookieless newcomer");
    assert!(!l.may_mint(IP, t), "but the address gets no new cookie now");
    assert!(l.may_mint(OTHER, t));
}

#[test]
fn a_cookie_never_makes_it_worse_and_a_larger_ban_after_never_bans_sooner() {
    // Request patterns of one client: steady rates, bursts with pauses of several lengths.
    let mut patterns: Vec<Vec<u64>> = Vec::new();
    for gap in [1u64, 5, 20, 200, 700, 1900] {
        patterns.push((0..600).map(|i| i * gap).collect());
    }
    for (burst, pause) in [
        (50u64, 500u64),
        (150, 1000),
        (150, 2500),
        (400, 3000),
        (90, 100),
    ] {
        patterns.push(
            (0..1200)
                .map(|i| (i / burst) * (burst + pause) + i % burst)
                .collect(),
        );
    }
    for times in &patterns {
        let mut last = (0, 0);
        for ban_after in [0u64, 1, 10, 100, 250, 300, 1000, 100_000] {
            let open = if ban_after == 0 { usize::MAX } else { 0 };
            let cookieless = served_until_banned(&limits(ban_after), None, times).max(open);
            let cookie = served_until_banned(&limits(ban_after), Some("v"), times).max(open);
            assert!(
                cookie >= cookieless.min(times.len()),
                "{ban_after}: {cookie} < {cookieless}"
            );
            if ban_after > 0 {
                assert!(
                    cookie >= last.1 && cookieless >= last.0,
                    "{ban_after} bans sooner"
                );
                last = (cookieless, cookie);
            } else {
                assert_eq!(
                    served_until_banned(&limits(0), Some("v"), times),
                    times.len()
                );
                assert_eq!(served_until_banned(&limits(0), None, times), times.len());
            }
        }
    }
}

#[test]
fn rotating_cookies_buys_a_bounded_few_and_no_fresh_cookies() {
    let l = Limits::new(LimitConfig {
        new_visitors_per_ip: 100,
        ..LimitConfig::default()
    });
    let t = Instant::now();
    let cookies: Vec<String> = (0..60).map(|i| format!("c{i}")).collect();
    let mut served = 0;
    for i in 0..30_000u64 {
        let cookie = &cookies[i as usize % cookies.len()];
        if allowed(&l.admit(IP, Some(cookie), t + Duration::from_micros(130 * i))) {
            served += 1;
        }
    }
    // Each overflow bans the longest run, so N cookies bought in advance yield at most about
    // limit x (1 + ln N): here 300 x 5.1, against 300 for one cookie that never pauses.
    let limit = LimitConfig::default().run_limit() as f64;
    let bound = limit * (1.0 + (cookies.len() as f64).ln());
    assert!((served as f64) <= bound, "{served} > {bound}");
    let later = t + Duration::from_secs(6);
    let open: Vec<&String> = cookies
        .iter()
        .filter(|c| allowed(&l.admit(IP, Some(c), later)))
        .collect();
    assert!(open.is_empty(), "{served} {open:?}");
    assert!(!l.may_mint(IP, later), "no fresh cookies to rotate to");
    // What is left is the cookieless window, like any script without cookies.
    let cookieless = (0..200)
        .take_while(|&i| allowed(&l.admit(IP, None, later + ms(i))))
        .count();
    assert_eq!(cookieless, 100);
}

#[test]
fn a_hammering_visitor_does_not_take_a_browser_on_the_same_address_with_it() {
    let l = limits(100);
    let t = Instant::now();
    let mut browser_refused = 0;
    for i in 0..9000u64 {
        let now = t + ms(i);
        l.admit(IP, Some("bot"), now);
        // The browser loads 40 requests every 3 s, the first load in the middle of the bot's run.
        if i % 3000 >= 100 && i % 3000 < 140 && !allowed(&l.admit(IP, Some("browser"), now)) {
            browser_refused += 1;
        }
    }
    assert_eq!(browser_refused, 0);
    assert!(!allowed(&l.admit(IP, Some("bot"), t + ms(9001))));
}

#[test]
fn bans_end_after_ban_for() {
    let l = Limits::new(LimitConfig {
        ban_after: 2,
        ban_for: Some(Duration::from_secs(30)),
        ..LimitConfig::default()
    });
    let t = Instant::now();
    assert!(allowed(&l.admit(IP, None, t)));
    assert!(allowed(&l.admit(IP, None, t)));
    assert!(!allowed(&l.admit(IP, None, t)));
    assert!(!allowed(&l.admit(IP, None, t + Duration::from_secs(29))));
    assert!(allowed(&l.admit(IP, None, t + Duration::from_secs(30))));
}

#[test]
fn zero_turns_bans_off_and_counts_go_on() {
    let l = limits(0);
    let t = Instant::now();
    for i in 1..=500 {
        assert_eq!(l.admit(IP, Some("v"), t), Admit::Allowed { nth: i });
    }
}

#[test]
fn minting_is_capped_per_address_and_window() {
    let l = limits(100);
    let t = Instant::now();
    assert!(l.may_mint(IP, t));
    assert!(l.may_mint(IP, t));
    assert!(l.may_mint(IP, t));
    assert!(!l.may_mint(IP, t));
    assert!(l.may_mint(OTHER, t));
    assert!(l.may_mint(IP, t + Duration::from_secs(60)));
}

#[test]
fn human_durations() {
    assert_eq!(human(Duration::from_secs(60)), "1m");
    assert_eq!(human(Duration::from_secs(90)), "90s");
    assert_eq!(human(Duration::from_millis(1500)), "1500ms");
}
