//! `porter upper` end to end: the TCP and UDP echo servers with concurrent clients (raw sockets and
//! `porter upper send`), UTF-8 text, and the client's error messages.

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::thread;
use std::time::Duration;

use crate::util::*;

const TEXT: &str = "héllo wörld";
const UPPER: &str = "HéLLO WöRLD";

#[test]
fn tcp_echo_serves_concurrent_clients_with_many_messages_each() {
    let server = Porter::start(&["upper", "serve"]);
    let addr = server.addr;
    let raw_clients: Vec<_> = (0..8)
        .map(|client| {
            thread::spawn(move || {
                let mut stream = connect(addr);
                for message in 0..20 {
                    let text = format!("client {client} message {message}: {TEXT} ß 日本");
                    stream.write_all(text.as_bytes()).unwrap();
                    let mut reply = vec![0; text.len()];
                    stream.read_exact(&mut reply).unwrap();
                    assert_eq!(
                        String::from_utf8(reply).unwrap(),
                        format!("CLIENT {client} MESSAGE {message}: {UPPER} ß 日本")
                    );
                }
            })
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let target = addr.to_string();
    let senders: Vec<_> = (0..4)
        .map(|n| {
            let (target, path) = (target.clone(), dir.path().to_path_buf());
            thread::spawn(move || {
                let input = format!("{TEXT}\nline {n}\r\n\nlast");
                run_porter(
                    &["upper", "send", &target],
                    &path,
                    &[],
                    Some(input.as_bytes()),
                )
            })
        })
        .collect();
    for client in raw_clients {
        client.join().expect("raw client");
    }
    for (n, sender) in senders.into_iter().enumerate() {
        let run = sender.join().expect("sender");
        assert!(run.ok(), "{run:?}");
        assert_eq!(
            run.stdout,
            format!("{target} > {UPPER}\n{target} > LINE {n}\n{target} > \n{target} > LAST\n")
        );
    }
    let run = run_porter(&["upper", "send", &target, TEXT], dir.path(), &[], None);
    assert!(run.ok(), "{run:?}");
    assert_eq!(run.stdout, format!("{target} > {UPPER}\n"));
}

#[test]
fn udp_echo_answers_each_datagram_for_concurrent_clients() {
    let server = Porter::start(&["upper", "serve", "--udp"]);
    let addr = server.addr;
    let clients: Vec<_> = (0..8)
        .map(|client| {
            thread::spawn(move || {
                let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
                socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                socket.connect(addr).unwrap();
                for message in 0..20 {
                    let text = format!("{client}/{message} {TEXT}");
                    socket.send(text.as_bytes()).unwrap();
                    let mut buf = [0u8; 1024];
                    let n = socket.recv(&mut buf).unwrap();
                    assert_eq!(
                        std::str::from_utf8(&buf[..n]).unwrap(),
                        format!("{client}/{message} {UPPER}")
                    );
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("udp client");
    }
    let dir = tempfile::tempdir().unwrap();
    let target = addr.to_string();
    let run = run_porter(
        &["upper", "send", "--udp", &target],
        dir.path(),
        &[],
        Some(format!("{TEXT}\nsecond line\n").as_bytes()),
    );
    assert!(run.ok(), "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{target} > {UPPER}\n{target} > SECOND LINE\n")
    );
}

#[test]
fn send_to_a_closed_tcp_port_says_connection_refused() {
    let dir = tempfile::tempdir().unwrap();
    let target = format!("127.0.0.1:{}", closed_port());
    let run = run_porter(&["upper", "send", &target, "hi"], dir.path(), &[], None);
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        format!("porter: connection refused: is the server running on {target}?")
    );
}

#[test]
fn send_without_udp_reply_explains_udp_is_connectionless() {
    let dir = tempfile::tempdir().unwrap();
    // Bound but never answering: the datagram arrives and nothing comes back.
    let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = silent.local_addr().unwrap().to_string();
    let run = run_porter(
        &[
            "upper",
            "send",
            "--udp",
            "--timeout",
            "300ms",
            &target,
            "anyone?",
        ],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(1));
    assert_eq!(
        run.stderr.trim(),
        format!(
            "porter: no udp reply from {target} within 300ms: udp is connectionless, so nothing \
             confirms delivery; the datagram or its reply was lost, or no server listens there"
        )
    );
    let mut buf = [0u8; 64];
    silent
        .set_read_timeout(Some(Duration::from_secs(1)))
        .unwrap();
    let (n, _) = silent.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"anyone?", "the datagram was sent");

    // A closed port: the ICMP "port unreachable" is reported, with the same explanation.
    let closed = UdpSocket::bind("127.0.0.1:0").unwrap();
    let target = closed.local_addr().unwrap().to_string();
    drop(closed);
    let run = run_porter(
        &[
            "upper",
            "send",
            "--udp",
            "--timeout",
            "300ms",
            &target,
            "anyone?",
        ],
        dir.path(),
        &[],
        None,
    );
    assert_eq!(run.code, Some(1));
    assert!(
        run.stderr.contains("udp is connectionless"),
        "{}",
        run.stderr
    );
}

#[test]
fn tcp_server_keeps_serving_after_a_client_vanishes() {
    let server = Porter::start(&["upper", "serve"]);
    {
        let mut rude = connect(server.addr);
        rude.write_all(b"half a message").unwrap();
    }
    let mut stream = connect(server.addr);
    stream.write_all(b"still there?").unwrap();
    let mut reply = [0u8; 12];
    stream.read_exact(&mut reply).unwrap();
    assert_eq!(&reply, b"STILL THERE?");
}
