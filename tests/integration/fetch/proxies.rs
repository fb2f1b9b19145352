//! `porter fetch` and proxies that need credentials, given each way (in `--proxy`, in
//! `http_proxy`, with `--proxy-user`), over plain http and CONNECT; and `no_proxy`.

use super::*;

const USER: &str = "alice";
const PASSWORD: &str = "s3cr@t:x";
/// The password percent-encoded, as it must be inside a URL's user info.
const ENCODED: &str = "s3cr%40t%3Ax";

/// One way of giving the credentials: its name, the flags and the environment.
type Way<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>);

fn auth_proxy(extra: &[&str]) -> Porter {
    let pair = format!("{USER}:{PASSWORD}");
    let mut args = vec!["proxy", "--no-cache", "--auth-user", &pair];
    args.extend_from_slice(extra);
    Porter::start(&args)
}

/// The password shows up nowhere a person or another program could read it.
fn assert_secret_kept(run: &Run, dir: &Path) {
    let log = std::fs::read_to_string(dir.join("download.log")).unwrap_or_default();
    for (what, text) in [
        ("stdout", &run.stdout),
        ("stderr", &run.stderr),
        ("log", &log),
    ] {
        assert!(!text.contains("s3cr"), "the password in {what}: {text}");
    }
}

#[test]
fn fetch_through_an_auth_proxy_with_each_way_of_giving_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<title>behind auth</title>");
    let proxy = auth_proxy(&[]);
    let url = origin.url("/");
    let in_url = format!("{USER}:{ENCODED}@{}", proxy.addr);
    let env_url = format!("http://{in_url}/");
    let pair = format!("{USER}:{PASSWORD}");
    let bare = proxy.addr.to_string();
    let ways: [Way; 4] = [
        (
            "--proxy USER:PASSWORD@HOST:PORT",
            vec!["--proxy", &in_url],
            vec![],
        ),
        (
            "http_proxy=http://USER:PASSWORD@HOST:PORT",
            vec![],
            vec![("http_proxy", &env_url)],
        ),
        (
            "--proxy HOST:PORT --proxy-user",
            vec!["--proxy", &bare, "--proxy-user", &pair],
            vec![],
        ),
        (
            "HTTP_PROXY=HOST:PORT --proxy-user",
            vec!["--proxy-user", &pair],
            vec![("HTTP_PROXY", &bare)],
        ),
    ];
    for (way, mut args, env) in ways {
        args.push(&url);
        let run = fetch_env(dir.path(), &args, &env);
        assert!(run.ok(), "{way}: {run:?}");
        assert!(run.stdout.starts_with("200 X  "), "{way}: {}", run.stdout);
        assert_secret_kept(&run, dir.path());
    }
    assert_eq!(origin.hits(), 4);
    for seen in origin.requests.lock().unwrap().iter() {
        assert!(
            !seen.to_ascii_lowercase().contains("proxy-authorization"),
            "{seen}"
        );
    }

    let wrong = format!("{USER}:wrong");
    let run = fetch(
        dir.path(),
        &["--proxy", &bare, "--proxy-user", &wrong, &url],
    );
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("answered 407"), "{}", run.stderr);
    let run = fetch(dir.path(), &["--proxy", &bare, &url]);
    assert!(run.stderr.contains("answered 407"), "{}", run.stderr);
    let run = fetch(dir.path(), &["--proxy", "alice:s3cr@t@nohost", &url]);
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("bad proxy \"alice:***@nohost\""),
        "{}",
        run.stderr
    );
    assert_secret_kept(&run, dir.path());
    assert!(!proxy.logs().contains("s3cr"), "nor in the proxy's log");
}

#[test]
fn https_through_an_auth_proxy_sends_the_credentials_with_connect() {
    let dir = tempfile::tempdir().unwrap();
    let origin = TlsOrigin::start(b"<title>tunnelled</title>".to_vec());
    let port = origin.addr.port().to_string();
    let proxy = auth_proxy(&["--connect-port", &port]);
    let pair = format!("{USER}:{PASSWORD}");
    let bare = proxy.addr.to_string();
    let url = origin.url("/");
    let run = fetch(
        dir.path(),
        &["--proxy", &bare, "--proxy-user", &pair, "--insecure", &url],
    );
    assert!(run.ok(), "{run:?}");
    let env_url = format!("http://{USER}:{ENCODED}@{bare}");
    let run = fetch_env(
        dir.path(),
        &["--insecure", &url],
        &[("https_proxy", &env_url)],
    );
    assert!(run.ok(), "{run:?}");
    assert_eq!(origin.hits(), 2);
    let run = fetch(dir.path(), &["--proxy", &bare, "--insecure", &url]);
    assert_eq!(run.code, Some(1), "{run:?}");
    assert!(run.stderr.contains("407"), "{}", run.stderr);
    assert_secret_kept(&run, dir.path());
}

#[test]
fn no_proxy_hosts_are_fetched_directly() {
    let dir = tempfile::tempdir().unwrap();
    let origin = html_origin("<title>np</title>");
    let proxy = Porter::start(&["proxy", "--no-cache"]);
    let via = format!("http://{}/", proxy.addr);
    let url = origin.url("/");
    let went_through = |n: usize| origin.requests.lock().unwrap()[n].contains("Via: 1.1 porter-");
    let cases = [
        ("no_proxy", "127.0.0.1", false),
        ("NO_PROXY", "localhost, 127.0.0.1:9", false),
        ("no_proxy", "*", false),
        ("no_proxy", ".example.com,other.test", true),
    ];
    for (n, (name, list, proxied)) in cases.into_iter().enumerate() {
        let run = fetch_env(dir.path(), &[&url], &[("http_proxy", &via), (name, list)]);
        assert!(run.ok(), "{name}={list}: {run:?}");
        assert_eq!(went_through(n), proxied, "{name}={list}");
    }
    // --proxy is an explicit choice: no_proxy does not override it.
    let run = fetch_env(
        dir.path(),
        &["--proxy", &proxy.addr.to_string(), &url],
        &[("no_proxy", "*")],
    );
    assert!(run.ok(), "{run:?}");
    assert!(went_through(4));
}
