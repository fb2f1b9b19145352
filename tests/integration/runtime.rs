//! The runtime under the real binary: a task that overflows its stack, and the stack gauge.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{IO_TIMEOUT, Porter, eventually, raw_request};

/// A task that overflows its stack used to be forgotten with its socket and every guard it held,
/// silently. Now the guard page's fault ends the process at once with a message that names the
/// task and the wait it had come out of. (The trigger exists in debug builds only.)
#[test]
#[cfg(debug_assertions)]
fn regression_a_task_stack_overflow_ends_the_process_with_a_message_naming_its_state() {
    let logs = tempfile::tempdir().unwrap();
    let stderr_path = logs.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(["proxy", "--no-cache", "--listen", "127.0.0.1:0"])
        .env("PORTER_DEBUG_TASK_STACK_OVERFLOW", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: std::net::SocketAddr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("first line was {line:?}"))
        .parse()
        .unwrap();
    let mut client = std::net::TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
    client.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    // The task overflows as its first wait ends: requests on the connection end whichever wait it
    // is in (before the first one, or idle after an answer).
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
        let _ = client.write_all(b"GET /metrics HTTP/1.1\r\nHost: porter\r\n\r\n");
    };
    let stderr = std::fs::read_to_string(&stderr_path).unwrap();
    let status = status.unwrap_or_else(|| panic!("still running after the overflow: {stderr}"));
    assert_eq!(status.code(), Some(70), "{stderr}");
    let message = stderr
        .lines()
        .find(|l| l.contains("overflowed its stack"))
        .unwrap_or_else(|| panic!("no overflow message in {stderr}"));
    assert!(
        message.contains("(worker ") && message.contains("last wait: client_"),
        "{message}"
    );
    assert!(message.contains("stack 1024 KiB"), "{message}");
}

/// The deepest stack a finished task touched is in /metrics, so stack sizes can be checked against
/// what requests use.
#[test]
fn the_task_stack_high_water_mark_is_in_metrics_once_a_connection_ends() {
    let porter = Porter::start(&["proxy", "--no-cache"]);
    let metrics = || {
        raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n")
            .unwrap()
            .text()
    };
    let high_water = |text: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix("porter_task_stack_high_water_bytes ")?
                .trim()
                .parse::<u64>()
                .ok()
        })
    };
    // The first connection's task ends when it closes; a later /metrics sees its stack.
    assert!(
        eventually(Duration::from_secs(10), || high_water(&metrics())
            .is_some_and(|bytes| bytes >= 4096)),
        "{}",
        metrics()
    );
    let bytes = high_water(&metrics()).unwrap();
    assert!(bytes <= 1024 * 1024, "{bytes}");
}

/// One stack per connection is two memory mappings: a `--max-connections` the kernel's
/// `vm.max_map_count` cannot carry used to show only as connections closed for want of a stack,
/// under load. Start-up now says so with the numbers.
#[test]
fn regression_max_connections_beyond_the_mapping_limit_is_warned_at_start() {
    // Two billion connections need four billion mappings: more than any vm.max_map_count (an int).
    let porter = Porter::start(&["proxy", "--no-cache", "--max-connections", "2000000000"]);
    assert!(
        eventually(Duration::from_secs(10), || porter
            .logs()
            .contains("vm.max_map_count is")),
        "{}",
        porter.logs()
    );
    let logs = porter.logs();
    assert!(
        logs.contains("--max-connections 2000000000 needs about"),
        "{logs}"
    );
    // And it still serves.
    let metrics = raw_request(porter.addr, b"GET /metrics HTTP/1.1\r\n\r\n").unwrap();
    assert_eq!(metrics.status, 200);
}
