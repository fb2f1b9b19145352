//! `porter serve` end to end, through the real binary and loopback sockets: `files` (status codes,
//! ranges, listings, traversal attempts), `state` (the state files and dotfiles that are never
//! served, visitor fields no shared cache stores, /getlogs in flat memory, event log rotation),
//! `visitors` (cookies across a restart, the Nth-visit page), `bans` (the ban rule from both sides)
//! and `bank` (the seeded fault mix, the event log, flags).

mod bank;
mod bans;
mod files;
mod https;
mod state;
mod visitors;

use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use crate::util::*;

pub const PNG: &[u8] = include_bytes!("../../../examples/www/porter.png");
pub const SECRET: &str = "TOP SECRET: outside the root";

/// A served folder and the server's files, in one temporary directory:
///
/// ```text
/// tmp/root/      index.html hello.txt image.png private.txt (0640) sub/index.html list/… closed/ (0750)
///                leak.txt -> ../outside/secret.txt, out -> ../outside, alias.txt -> hello.txt
/// tmp/outside/   secret.txt
/// tmp/cookies.json tmp/server.log
/// ```
pub struct Site {
    pub dir: tempfile::TempDir,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("root");
        let outside = dir.path().join("outside");
        for folder in [
            &root,
            &outside,
            &root.join("sub"),
            &root.join("list/folder"),
        ] {
            std::fs::create_dir_all(folder).unwrap();
        }
        let files: [(&str, &[u8]); 7] = [
            (
                "index.html",
                b"<!DOCTYPE html><title>Home</title><p>home page</p>\n",
            ),
            ("hello.txt", b"hello, world\n"),
            ("image.png", PNG),
            ("private.txt", b"private\n"),
            ("sub/index.html", b"<title>Sub</title><p>sub index</p>\n"),
            ("list/a.txt", b"a\n"),
            ("list/with space & <b>.txt", b"odd name\n"),
        ];
        for (name, bytes) in files {
            std::fs::write(root.join(name), bytes).unwrap();
        }
        std::fs::set_permissions(
            root.join("private.txt"),
            std::fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        std::fs::create_dir(root.join("closed")).unwrap();
        std::fs::write(root.join("closed/open.txt"), b"open\n").unwrap();
        std::fs::set_permissions(root.join("closed"), std::fs::Permissions::from_mode(0o750))
            .unwrap();
        std::fs::write(outside.join("secret.txt"), SECRET).unwrap();
        symlink("../outside/secret.txt", root.join("leak.txt")).unwrap();
        symlink("../outside", root.join("out")).unwrap();
        symlink("hello.txt", root.join("alias.txt")).unwrap();
        Site { dir }
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    pub fn cookies(&self) -> PathBuf {
        self.dir.path().join("cookies.json")
    }

    pub fn events(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// Starts `porter serve` on this site with extra flags.
    pub fn serve(&self, extra: &[&str]) -> Porter {
        let (root, cookies, events) = (self.root(), self.cookies(), self.events());
        let mut args = vec![
            "serve",
            "--root",
            path_str(&root),
            "--cookies",
            path_str(&cookies),
            "--event-log",
            path_str(&events),
        ];
        args.extend_from_slice(extra);
        Porter::start(&args)
    }
}

pub fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}

/// One request on a new connection (closed after it).
pub fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: test\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("Connection: close\r\n\r\n");
    raw_request(addr, raw.as_bytes())
}

pub fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Response {
    request(addr, "GET", target, headers).expect("a response")
}

/// The visitor id a response sets, if any.
pub fn set_cookie_id(response: &Response) -> Option<String> {
    let value = response.header("set-cookie")?;
    let pair = value.split(';').next()?;
    pair.strip_prefix("porter_visitor=").map(str::to_string)
}

pub fn visits(response: &Response) -> Option<u64> {
    response.header("x-visit-count")?.parse().ok()
}
