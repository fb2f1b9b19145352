//! Pipelined requests against the event-driven request path: a worker waits for a keep-alive
//! client's next request without reading first only when the socket said it was empty, so bytes
//! already in the kernel are never left waiting for an edge that came and went.

use std::io::Write;
use std::time::Duration;

use crate::util::*;

/// A request line padded with a header to exactly `size` bytes.
fn padded_get(url: &str, size: usize) -> String {
    let bare = format!("GET {url} HTTP/1.1\r\nHost: x\r\nX-Pad: \r\n\r\n");
    assert!(bare.len() <= size);
    format!(
        "GET {url} HTTP/1.1\r\nHost: x\r\nX-Pad: {}\r\n\r\n",
        "p".repeat(size - bare.len())
    )
}

#[test]
fn regression_more_pipelined_requests_than_one_read_takes_are_all_answered() {
    let origin = Origin::start(|_, path, _| (200, vec![], path.as_bytes().to_vec()));
    let porter = Porter::start(&["proxy", "--no-cache"]);
    let (mut writer, mut reader) = connect_split(porter.addr);
    // One request first, so the connection is waiting (registered) when the burst comes.
    write!(
        writer,
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/first")
    )
    .unwrap();
    assert_eq!(read_response(&mut reader, false).unwrap().text(), "/first");
    std::thread::sleep(Duration::from_millis(100));
    // Sixteen 512-byte requests in one write: a read of the first 4 KiB ends exactly at the end of
    // the eighth, with the rest still in the kernel and no new edge to come.
    let burst: String = (0..16)
        .map(|i| padded_get(&origin.url(&format!("/{i}")), 512))
        .collect();
    writer.write_all(burst.as_bytes()).unwrap();
    for i in 0..16 {
        let response = read_response(&mut reader, false)
            .unwrap_or_else(|e| panic!("response {i} of 16 never came: {e}"));
        assert_eq!(response.text(), format!("/{i}"));
    }
}

#[test]
fn regression_a_request_pipelined_while_a_large_response_is_written_is_answered() {
    const BIG: usize = 8 << 20;
    let origin = Origin::start(|_, path, _| {
        let body = if path == "/big" {
            vec![b'b'; BIG]
        } else {
            path.as_bytes().to_vec()
        };
        (200, vec![], body)
    });
    let porter = Porter::start(&["proxy", "--no-cache"]);
    let (mut writer, mut reader) = connect_split(porter.addr);
    write!(
        writer,
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/big")
    )
    .unwrap();
    // Unread, the 8 MiB fill the socket buffers and the proxy waits to write: the next request
    // arrives during that wait.
    std::thread::sleep(Duration::from_millis(300));
    write!(
        writer,
        "GET {} HTTP/1.1\r\nHost: x\r\n\r\n",
        origin.url("/next")
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let big = read_response(&mut reader, false).unwrap();
    assert_eq!(big.body.len(), BIG);
    let second = read_response(&mut reader, false).unwrap();
    assert_eq!(second.text(), "/next");
}
