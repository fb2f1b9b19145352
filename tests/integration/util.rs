//! Helpers shared by the integration tests: running the real binary on an ephemeral port, raw HTTP
//! over loopback sockets with timeouts, and small origin servers that count their hits.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Every socket in a test gives up after this long, so a hang fails the test instead of stalling CI.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `porter` child process, killed when dropped.
pub struct Porter {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr_path: std::path::PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Porter {
    /// Starts `porter <args> --listen 127.0.0.1:0` and waits for its `listening on` line.
    pub fn start(args: &[&str]) -> Porter {
        Porter::start_in(args, None)
    }

    /// Like `start`, with the working directory set (the default cache folder lands there).
    pub fn start_in(args: &[&str], dir: Option<&Path>) -> Porter {
        Porter::start_at(args, dir, "127.0.0.1:0")
    }

    /// Like `start_in`, listening on `listen` (a reserved port, or another loopback address).
    pub fn start_at(args: &[&str], dir: Option<&Path>, listen: &str) -> Porter {
        Porter::launch(&[], args, dir, listen)
    }

    /// Like `start_in`, run through a wrapper command that execs porter in its place (`prlimit
    /// --nofile=40 --`), so the child is still porter itself.
    pub fn start_under(wrapper: &[&str], args: &[&str], dir: Option<&Path>) -> Porter {
        Porter::launch(wrapper, args, dir, "127.0.0.1:0")
    }

    fn launch(wrapper: &[&str], args: &[&str], dir: Option<&Path>, listen: &str) -> Porter {
        let logs = tempfile::tempdir().expect("temp dir");
        let stderr_path = logs.path().join("stderr.log");
        let stderr = std::fs::File::create(&stderr_path).expect("stderr file");
        let mut command = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut command = Command::new(program);
                command.args(rest).arg(env!("CARGO_BIN_EXE_porter"));
                command
            }
            None => Command::new(env!("CARGO_BIN_EXE_porter")),
        };
        command
            .args(args)
            .args(["--listen", listen])
            .env("RUST_LOG", "debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        if let Some(dir) = dir {
            command.current_dir(dir);
        }
        let mut child = command.spawn().expect("porter starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("first line");
        let addr = line
            .trim()
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first line was {line:?}"))
            .parse()
            .expect("an address");
        Porter {
            child,
            addr,
            stderr_path,
            _dir: Some(logs),
        }
    }

    /// Everything the process wrote to stderr so far (its logs).
    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self) -> Option<std::process::ExitStatus> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Porter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client socket with timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    stream.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // No Nagle delay: each write leaves at once as its own segment, so a request written in pieces
    // reaches the server in pieces, and a small write is never held back for an ACK.
    let _ = stream.set_nodelay(true);
    stream
}

/// A client connection (see [`connect`]) as a writer and a buffered reader, for keep-alive and
/// pipelined requests.
pub fn connect_split(addr: SocketAddr) -> (TcpStream, BufReader<TcpStream>) {
    let stream = connect(addr);
    let writer = stream.try_clone().unwrap();
    (writer, BufReader::new(stream))
}

/// A parsed response as a test sees it.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Reads one response from a buffered stream; `head_only` for responses to HEAD.
pub fn read_response(
    reader: &mut BufReader<TcpStream>,
    head_only: bool,
) -> std::io::Result<Response> {
    let mut status_line = String::new();
    loop {
        status_line.clear();
        if reader.read_line(&mut status_line)? == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "no response",
            ));
        }
        let status: u16 = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line)?;
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            let (n, v) = line.split_once(':').expect("header line");
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        if (100..200).contains(&status) {
            continue;
        }
        let mut response = Response {
            status,
            headers,
            body: Vec::new(),
        };
        if head_only || status == 204 || status == 304 {
            return Ok(response);
        }
        if response.header("transfer-encoding").is_some() {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size)?;
                let size =
                    usize::from_str_radix(size.trim().split(';').next().unwrap(), 16).unwrap();
                if size == 0 {
                    let mut end = String::new();
                    reader.read_line(&mut end)?;
                    break;
                }
                let mut chunk = vec![0; size + 2];
                reader.read_exact(&mut chunk)?;
                response.body.extend_from_slice(&chunk[..size]);
            }
        } else if let Some(len) = response.header("content-length") {
            let mut body = vec![0; len.parse().unwrap()];
            reader.read_exact(&mut body)?;
            response.body = body;
        } else {
            reader.read_to_end(&mut response.body)?;
        }
        return Ok(response);
    }
}

/// Sends raw bytes on a new connection and reads one response.
pub fn raw_request(addr: SocketAddr, bytes: &[u8]) -> std::io::Result<Response> {
    let mut stream = connect(addr);
    stream.write_all(bytes)?;
    read_response(&mut BufReader::new(stream), bytes.starts_with(b"HEAD "))
}

/// A GET through the proxy at `proxy` for an absolute URL.
pub fn proxy_get(proxy: SocketAddr, url: &str, extra_headers: &[(&str, &str)]) -> Response {
    let mut request = format!("GET {url} HTTP/1.1\r\nHost: {}\r\n", host_of(url));
    for (name, value) in extra_headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("Connection: close\r\n\r\n");
    raw_request(proxy, request.as_bytes()).expect("a response")
}

fn host_of(url: &str) -> &str {
    url.split("://")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("")
}

/// What a test origin answers: status, headers and body for a request (method, path, headers).
pub type Route =
    dyn Fn(&str, &str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>) + Send + Sync;

/// A tiny threaded HTTP/1.1 origin on 127.0.0.1:0 that counts its requests and records their heads.
pub struct Origin {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub requests: Arc<std::sync::Mutex<Vec<String>>>,
}

impl Origin {
    pub fn start(
        route: impl Fn(&str, &str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
    ) -> Origin {
        Origin::start_at("127.0.0.1:0", route)
    }

    /// Like `start`, on another loopback address (`127.0.0.2:0`), for rules about destinations.
    pub fn start_at(
        listen: &str,
        route: impl Fn(&str, &str, &[(String, String)]) -> (u16, Vec<(String, String)>, Vec<u8>)
        + Send
        + Sync
        + 'static,
    ) -> Origin {
        let listener = TcpListener::bind(listen).unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let route: Arc<Route> = Arc::new(route);
        let (h, r) = (hits.clone(), requests.clone());
        thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (route, hits, requests) = (route.clone(), h.clone(), r.clone());
                thread::spawn(move || serve_origin(stream, &*route, &hits, &requests));
            }
        });
        Origin {
            addr,
            hits,
            requests,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn serve_origin(
    stream: TcpStream,
    route: &Route,
    hits: &AtomicUsize,
    requests: &std::sync::Mutex<Vec<String>>,
) {
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let Some(head) = read_test_request_head(&mut reader) else {
            return;
        };
        let TestRequestHead {
            method,
            path,
            headers,
            mut raw,
        } = head;
        let find = |name: &str| header_value(&headers, name);
        let mut body = Vec::new();
        if let Some(len) = find("content-length") {
            body = vec![0; len.parse().unwrap_or(0)];
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if find("transfer-encoding").is_some() {
            loop {
                let mut size = String::new();
                reader.read_line(&mut size).ok();
                let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                body.extend_from_slice(&chunk[..size]);
                if size == 0 {
                    break;
                }
            }
        }
        raw.push_str(&String::from_utf8_lossy(&body));
        hits.fetch_add(1, Ordering::SeqCst);
        requests.lock().unwrap().push(raw);
        let (status, resp_headers, resp_body) = route(&method, &path, &headers);
        let mut out = format!("HTTP/1.1 {status} X\r\n");
        let mut has_length = false;
        for (n, v) in &resp_headers {
            has_length |= n.eq_ignore_ascii_case("content-length")
                || n.eq_ignore_ascii_case("transfer-encoding");
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if !has_length && status != 304 && status != 204 {
            out.push_str(&format!("Content-Length: {}\r\n", resp_body.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if method != "HEAD" {
            bytes.extend_from_slice(&resp_body);
        }
        if writer.write_all(&bytes).is_err() {
            return;
        }
    }
}

/// A request head as the test origins see it: method, path, fields, and the raw text.
pub struct TestRequestHead {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub raw: String,
}

/// Reads a request line and its fields, line by line; `None` when the peer closes first.
pub fn read_test_request_head(reader: &mut impl BufRead) -> Option<TestRequestHead> {
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let path = parts.next().unwrap_or("").to_string();
    let mut headers = Vec::new();
    let mut raw = line.clone();
    loop {
        let mut field = String::new();
        if reader.read_line(&mut field).unwrap_or(0) == 0 {
            return None;
        }
        raw.push_str(&field);
        let field = field.trim_end();
        if field.is_empty() {
            break;
        }
        if let Some((n, v)) = field.split_once(':') {
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
    }
    Some(TestRequestHead {
        method,
        path,
        headers,
        raw,
    })
}

/// The first value of a field, ignoring the name's case.
pub fn header_value(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.clone())
}

/// Headers from string pairs.
pub fn hdrs(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
}

/// Polls `check` every 20 ms until it holds or `limit` passes; returns whether it held.
pub fn eventually(limit: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        thread::sleep(Duration::from_millis(20));
    }
    check()
}

/// What a finished `porter` run printed and how it exited.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Proxy variables a developer's shell may have set; runs start without them unless a test sets one.
const PROXY_VARS: [&str; 6] = [
    "http_proxy",
    "HTTP_PROXY",
    "https_proxy",
    "HTTPS_PROXY",
    "no_proxy",
    "NO_PROXY",
];

/// Runs `porter <args>` to completion in `dir` with `env` set and `stdin` fed, killing it if it runs
/// past 60 s so a hang fails the test. Output goes through files, so a chatty child never blocks.
pub fn run_porter(args: &[&str], dir: &Path, env: &[(&str, &str)], stdin: Option<&[u8]>) -> Run {
    let out = tempfile::tempdir().expect("temp dir");
    let stdout_path = out.path().join("stdout");
    let stderr_path = out.path().join("stderr");
    let mut command = Command::new(env!("CARGO_BIN_EXE_porter"));
    command
        .args(args)
        .current_dir(dir)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(std::fs::File::create(&stdout_path).expect("stdout file"))
        .stderr(std::fs::File::create(&stderr_path).expect("stderr file"));
    for var in PROXY_VARS {
        command.env_remove(var);
    }
    // Exact stderr comparisons need the default log level, whatever the developer's shell says.
    command.env_remove("RUST_LOG");
    command.envs(env.iter().copied());
    let mut child = command.spawn().expect("porter starts");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input).expect("write stdin");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("porter {args:?} did not finish within 60 s");
        }
        thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code(),
        stdout: std::fs::read_to_string(&stdout_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&stderr_path).unwrap_or_default(),
    }
}

/// The names of the files in `dir`, sorted; empty if it does not exist.
pub fn file_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// A TCP server on 127.0.0.1:0 that runs `handle` on each accepted connection in its own thread, for
/// origins that misbehave at the socket level (silence, truncation).
pub fn raw_server(handle: impl Fn(usize, TcpStream) + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let handle = Arc::new(handle);
    thread::spawn(move || {
        for (n, stream) in listener.incoming().flatten().enumerate() {
            let handle = Arc::clone(&handle);
            thread::spawn(move || handle(n, stream));
        }
    });
    addr
}

/// A [`raw_server`] that reads each request's head, counts it, and leaves the answer to `answer`;
/// returns its address and the count.
pub fn counting_raw_server(
    answer: impl Fn(TcpStream) + Send + Sync + 'static,
) -> (SocketAddr, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    let addr = raw_server(move |_, mut stream| {
        if read_request_head(&mut stream) {
            counter.fetch_add(1, Ordering::SeqCst);
            answer(stream);
        }
    });
    (addr, hits)
}

/// Reads a request head (up to the blank line) from a raw connection; false if it never came.
pub fn read_request_head(stream: &mut TcpStream) -> bool {
    stream.set_read_timeout(Some(IO_TIMEOUT)).ok();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return false,
        }
    }
    true
}

/// A port on 127.0.0.1 that nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("local addr").port()
}

// ---- Tests that drive an outside tool ---------------------------------------------------------
//
// One rule for every test that needs something Porter does not ship (Chromium, curl, haproxy, a
// tmpfs mount): under `PORTER_CI=1` (set once by `.ci/run`, which installs every such tool) a
// missing one FAILS the test, naming the Debian package; anywhere else the test returns early and
// says so on stderr, written past the harness's capture so `cargo test` shows it without
// `--nocapture`. A skip is never silent, and CI never skips.

/// The variable `.ci/run` sets: a missing tool is then a failure, not a skip.
pub const CI_VARIABLE: &str = "PORTER_CI";

/// Whether this run is CI's (`PORTER_CI` set to anything but empty or `0`).
pub fn in_ci() -> bool {
    std::env::var_os(CI_VARIABLE).is_some_and(|v| !v.is_empty() && v != "0")
}

/// The first of `names` found as a file in a `PATH` folder.
pub fn find_on_path(names: &[&str]) -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// The path of the tool a test needs (the first of `names` on `PATH`), or `None` after
/// [`skip_unless_ci`] said the test did not run; `package` is the Debian package that has it.
///
/// ```ignore
/// let Some(chromium) = require_tool(&["chromium", "chromium-browser"], "chromium") else { return };
/// ```
#[track_caller]
pub fn require_tool(names: &[&str], package: &str) -> Option<std::path::PathBuf> {
    let found = find_on_path(names);
    if found.is_none() {
        skip_unless_ci(
            &format!("{} is not installed", names.join(" or ")),
            &format!("apt-get install {package}"),
        );
    }
    found
}

/// Whether `python3` can import `module`; if not, [`skip_unless_ci`] with `package`'s install line.
#[track_caller]
pub fn require_python_module(module: &str, package: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        skip_unless_ci(
            &format!("python3 cannot import {module}"),
            &format!("apt-get install {package}"),
        );
    }
    found
}

/// The test that calls this does not run because `missing`; `remedy` says how to get it. Under
/// `PORTER_CI=1` this panics (CI must run every test); elsewhere it prints one `SKIPPED` line
/// naming the test and returns, and the caller returns.
#[track_caller]
pub fn skip_unless_ci(missing: &str, remedy: &str) {
    let current = thread::current();
    let test = current.name().unwrap_or("this test");
    if in_ci() {
        panic!("{test}: {missing}; {CI_VARIABLE} is set, so CI must provide it ({remedy})");
    }
    // Straight to stderr, past the harness's capture of `eprintln!`, so the skip is seen.
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {missing} ({remedy}; with {CI_VARIABLE}=1 this fails)"
    );
}

/// Writes `text` to `porter`'s configuration file `path`, sends it SIGHUP, and waits (at most ten
/// seconds) until it logs one `configuration reloaded` more than before: the new settings apply
/// from then on.
pub fn reload(porter: &Porter, path: &Path, text: &str) {
    let reloads = || porter.logs().matches("configuration reloaded").count();
    let before = reloads();
    std::fs::write(path, text).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", &porter.child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    assert!(
        eventually(Duration::from_secs(10), || reloads() > before),
        "{}",
        porter.logs()
    );
}

/// The address a test host name from `.ci/run`'s /etc/hosts list (`registry.porter.test` and the
/// like) resolves to, for clients that never use a proxy for loopback names. `None` (the test
/// skips) where it does not resolve, which under PORTER_CI=1 fails the test instead.
pub fn require_test_host(name: &str) -> Option<std::net::IpAddr> {
    use std::net::ToSocketAddrs;
    let found = (name, 80)
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .map(|addr| addr.ip())
        .filter(|ip| ip.is_loopback());
    if found.is_none() {
        skip_unless_ci(
            &format!("the test host name {name}"),
            "add it to /etc/hosts under a 127.x address as .ci/run does",
        );
    }
    found
}
