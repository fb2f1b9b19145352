//! Visitors and limits: the cookie across a restart, saves and corrupt files, the center of the
//! pop, and both sides of the ban rule.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

#[test]
fn visitor_cookie_counts_visits_and_survives_a_restart() {
    let site = Site::new();
    let mut porter = site.serve(&[]);
    let first = get(porter.addr, "/hello.txt", &[]);
    let id = set_cookie_id(&first).expect("a visitor cookie");
    assert_eq!(id.len(), 32);
    assert!(id.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(
        first.header("set-cookie"),
        Some(format!("porter_visitor={id}; Path=/; HttpOnly; SameSite=Lax").as_str())
    );
    assert_eq!(visits(&first), Some(1));
    assert_eq!(
        first.header("cache-control"),
        Some("max-age=60, no-cache=\"Set-Cookie, X-Visit-Count\""),
        "a shared cache must not hand this cookie to others"
    );
    let cookie = format!("theme=dark; porter_visitor={id}");
    let second = get(porter.addr, "/", &[("Cookie", &cookie)]);
    assert_eq!(visits(&second), Some(2));
    assert!(second.header("set-cookie").is_none());
    // A forged or unknown id is no cookie at all: the client gets a fresh one.
    let forged = get(
        porter.addr,
        "/",
        &[("Cookie", "porter_visitor=00000000000000000000000000000001")],
    );
    let other = set_cookie_id(&forged).expect("a new cookie");
    assert_ne!(other, id);
    assert_eq!(visits(&forged), Some(1));

    let status = porter.terminate().expect("exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    let saved = std::fs::read_to_string(site.cookies()).unwrap();
    let json: serde_json::Value = serde_json::from_str(&saved).expect("readable JSON");
    assert_eq!(json["visitors"][&id]["visits"], 2);
    assert!(json["visitors"][&id]["last_visit"].is_string());

    let porter = site.serve(&[]);
    let after = get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]);
    assert_eq!(visits(&after), Some(3));
    assert!(after.header("set-cookie").is_none());
}

#[test]
fn regression_a_crafted_visit_count_of_u64_max_saturates_instead_of_wrapping() {
    let site = Site::new();
    let mut porter = site.serve(&[]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).expect("a visitor cookie");
    assert!(porter.terminate().is_some_and(|s| s.success()));
    let saved = std::fs::read_to_string(site.cookies()).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&saved).unwrap();
    json["visitors"][&id]["visits"] = serde_json::Value::from(u64::MAX);
    std::fs::write(site.cookies(), json.to_string()).unwrap();

    let porter = site.serve(&[]);
    let cookie = format!("porter_visitor={id}");
    for _ in 0..2 {
        let next = get(porter.addr, "/", &[("Cookie", &cookie)]);
        assert_eq!(next.status, 200);
        assert_eq!(visits(&next), Some(u64::MAX), "the count wrapped");
    }
}

#[test]
fn visitors_are_saved_while_running() {
    let site = Site::new();
    let porter = site.serve(&["--save-every", "100ms"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    assert!(eventually(Duration::from_secs(5), || {
        std::fs::read_to_string(site.cookies()).is_ok_and(|s| s.contains(&id))
    }));
}

#[test]
fn corrupt_cookies_file_is_moved_aside() {
    let site = Site::new();
    std::fs::write(site.cookies(), b"{\"visitors\": {\"abc\": tru").unwrap();
    let mut porter = site.serve(&[]);
    assert_eq!(get(porter.addr, "/", &[]).status, 200);
    assert!(porter.logs().contains("is not valid"), "{}", porter.logs());
    let aside: Vec<PathBuf> = std::fs::read_dir(site.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().contains("cookies.json.corrupt-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).unwrap(),
        b"{\"visitors\": {\"abc\": tru"
    );
    assert!(porter.terminate().is_some_and(|s| s.success()));
    let fresh = std::fs::read_to_string(site.cookies()).unwrap();
    assert!(serde_json::from_str::<serde_json::Value>(&fresh).is_ok());
}

#[test]
fn nth_request_reaches_the_center_of_the_pop() {
    let site = Site::new();
    let porter = site.serve(&["--special-after", "3"]);
    assert!(get(porter.addr, "/", &[]).text().contains("home page"));
    assert!(get(porter.addr, "/", &[]).text().contains("home page"));
    let third = get(porter.addr, "/", &[]);
    assert_eq!(third.status, 200);
    assert!(
        third.text().contains("center of the pop"),
        "{}",
        third.text()
    );
    assert!(third.text().contains("For you, 3."));
    assert_eq!(third.header("cache-control"), Some("no-store"));
    // Other paths stay normal; / stays special.
    assert_eq!(get(porter.addr, "/hello.txt", &[]).text(), "hello, world\n");
    assert!(get(porter.addr, "/", &[]).text().contains("For you, 5."));

    let off = site.serve(&["--special-after", "0"]);
    for _ in 0..5 {
        assert!(get(off.addr, "/", &[]).text().contains("home page"));
    }
}

#[test]
fn script_hammering_without_a_cookie_is_banned() {
    let site = Site::new();
    let porter = site.serve(&["--ban-after", "20"]);
    for i in 0..20 {
        assert_eq!(
            get(porter.addr, "/hello.txt", &[]).status,
            200,
            "request {i}"
        );
    }
    let banned = get(porter.addr, "/hello.txt", &[]);
    assert_eq!(banned.status, 403);
    assert!(banned.text().contains("banned"), "{}", banned.text());
    assert!(banned.text().contains("more than 20 requests within 1m"));
    assert_eq!(banned.header("connection"), Some("close"));
    // Still banned without a cookie, and logged once.
    assert_eq!(get(porter.addr, "/", &[]).status, 403);
    let logged = "banning requests without a visitor cookie from 127.0.0.1";
    assert!(eventually(Duration::from_secs(5), || porter
        .logs()
        .contains(logged)));
    assert_eq!(porter.logs().matches(logged).count(), 1);
}

#[test]
fn script_keeping_its_cookie_but_never_pausing_is_banned() {
    let site = Site::new();
    let porter = site.serve(&["--ban-after", "5", "--visitor-burst", "10"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    let cookie = format!("porter_visitor={id}");
    let statuses: Vec<u16> = (0..15)
        .map(|_| get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]).status)
        .collect();
    assert!(statuses.contains(&403), "{statuses:?}");
    assert!(statuses[..10].iter().all(|&s| s == 200), "{statuses:?}");
}

#[test]
fn browser_loading_pages_in_bursts_with_its_cookie_is_not_banned() {
    let site = Site::new();
    // Without the cookie rule, 21 requests would ban this client; the browser makes 61.
    let porter = site.serve(&["--ban-after", "20"]);
    let id = set_cookie_id(&get(porter.addr, "/", &[])).unwrap();
    let cookie = format!("porter_visitor={id}");
    for page in 0..3 {
        // A page and its images over one keep-alive connection, as a browser does.
        let (mut writer, mut reader) = connect_split(porter.addr);
        for i in 0..20 {
            let target = if i == 0 { "/index.html" } else { "/image.png" };
            write!(
                writer,
                "GET {target} HTTP/1.1\r\nHost: test\r\nCookie: {cookie}\r\n\r\n"
            )
            .unwrap();
            let response = read_response(&mut reader, false).unwrap();
            assert_eq!(response.status, 200, "page {page} request {i}");
        }
        // The pause between pages is what a person's reading time looks like, shortened.
        std::thread::sleep(Duration::from_millis(400));
    }
    let last = get(porter.addr, "/hello.txt", &[("Cookie", &cookie)]);
    assert_eq!(last.status, 200);
    assert_eq!(visits(&last), Some(62));
    assert!(!porter.logs().contains("banning"));
}

#[test]
fn bans_end_after_ban_for() {
    let site = Site::new();
    let porter = site.serve(&["--ban-after", "3", "--ban-for", "300ms"]);
    for _ in 0..3 {
        assert_eq!(get(porter.addr, "/", &[]).status, 200);
    }
    let banned = get(porter.addr, "/", &[]);
    assert_eq!(banned.status, 403);
    assert!(banned.text().contains("It ends in"), "{}", banned.text());
    assert!(eventually(Duration::from_secs(5), || get(
        porter.addr,
        "/",
        &[]
    )
    .status
        == 200));
}
