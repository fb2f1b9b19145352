//! How `porter cache purge|clear` reaches proxies running on the same folder: each proxy listens on
//! a Unix socket `control/PID.sock` inside the cache folder, and the command, after removing the
//! files, tells every proxy found there which keys are gone. The proxy drops them from its memory
//! tier and its index and answers `ok`; only then does the command return, so once it has, nothing it
//! removed is served again.
//!
//! Why a control socket and not the others the issue named:
//! - *the proxy noticing the files are gone*: a memory-tier hit makes no syscall at all (that is its
//!   point), so noticing would cost a `stat` per hit, or leave a window while a watcher catches up;
//! - *a lock that makes the command refuse while a proxy runs*: purging a team's running proxy is the
//!   case the command is for;
//! - *a request to the proxy's HTTP port*: the command does not know the port, and `--auth-user`
//!   and `--allow` would stand in the way. The socket lives in the folder, so whoever may remove the
//!   folder's files may also tell the proxy so, and no one else gains anything.
//!
//! ```text
//!  porter cache purge URL                      proxy (thread "cache-control")
//!   remove the URL's files
//!   connect control/PID.sock ───────────────>  accept
//!   "forget HEX\n" per file, then EOF  ──────>  memory.remove, index.remove
//!                                <─────────────  "ok\n"
//!   (refused: a dead proxy's socket: remove it)
//! ```

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use super::key::Key;
use super::memory::MemoryTier;
use super::store::Store;

/// The folder, inside the cache folder, where running proxies put their sockets.
pub const CONTROL_DIR: &str = "control";
/// How long the command waits for a proxy's answer, and a proxy for the command's lines.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines a proxy reads from one connection at most (one per removed file, or `clear`).
const MAX_LINES: usize = 1_000_000;

/// What the command tells a running proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// These entry files were removed.
    Forget(Vec<Key>),
    /// The folder was emptied: forget everything whose file is gone.
    Clear,
}

/// A proxy's listening socket; dropping it stops the thread and removes the socket file.
pub struct ControlSocket {
    path: PathBuf,
    stop: Arc<AtomicBool>,
}

/// Starts listening in `root/control/` for this process.
pub fn listen(
    root: &Path,
    store: &Arc<Store>,
    memory: &Arc<MemoryTier>,
) -> io::Result<ControlSocket> {
    let dir = root.join(CONTROL_DIR);
    crate::perms::create_private_dir_all(&dir)?;
    let path = dir.join(format!("{}.sock", std::process::id()));
    // A socket file of a dead process with our pid would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let (store, memory, flag) = (
        Arc::downgrade(store),
        Arc::downgrade(memory),
        Arc::clone(&stop),
    );
    std::thread::Builder::new()
        .name("cache-control".into())
        .spawn(move || serve(listener, store, memory, flag))?;
    Ok(ControlSocket { path, stop })
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
    }
}

/// One command connection at a time: they are rare and short, and serial handling bounds the work.
fn serve(
    listener: UnixListener,
    store: Weak<Store>,
    memory: Weak<MemoryTier>,
    stop: Arc<AtomicBool>,
) {
    for stream in listener.incoming() {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        let (Some(store), Some(memory)) = (store.upgrade(), memory.upgrade()) else {
            return;
        };
        match stream.and_then(|s| answer(s, &store, &memory)) {
            Ok(forgotten) => {
                log::info!("cache: forgot {forgotten} entries removed by porter cache")
            }
            Err(e) => log::warn!("cache: control connection failed: {e}"),
        }
    }
}

/// Reads the command's lines, acts on each, and answers `ok` (or `error: …` for a line it does not
/// understand, after acting on the others). Returns how many entries were forgotten.
fn answer(stream: UnixStream, store: &Store, memory: &MemoryTier) -> io::Result<usize> {
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut forgotten = 0;
    let mut bad = None;
    let reader = BufReader::new(&stream).take(64 * MAX_LINES as u64);
    for line in reader.lines().take(MAX_LINES) {
        let line = line?;
        match parse_line(&line) {
            Some(Message::Forget(keys)) => {
                for key in keys {
                    memory.remove(&key);
                    store.forget(key);
                    forgotten += 1;
                }
            }
            Some(Message::Clear) => {
                memory.clear();
                forgotten += store.forget_missing();
            }
            None => bad = Some(line),
        }
    }
    let reply = match bad {
        None => "ok\n".to_string(),
        Some(line) => format!("error: unknown line {line:?}\n"),
    };
    (&stream).write_all(reply.as_bytes())?;
    Ok(forgotten)
}

fn parse_line(line: &str) -> Option<Message> {
    match line.split_once(' ') {
        Some(("forget", hex)) if hex.len() == 64 => {
            Key::from_path_parts(&hex[..2], &hex[2..]).map(|k| Message::Forget(vec![k]))
        }
        None if line == "clear" => Some(Message::Clear),
        _ => None,
    }
}

/// What telling the running proxies came to.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Told {
    /// Proxies that answered `ok`.
    pub proxies: usize,
    /// Sockets of proxies that are gone, removed.
    pub stale: usize,
}

/// Tells every proxy running on the folder `root`. A proxy that is alive but does not answer is an
/// error: the command cannot promise the entry will not be served.
pub fn notify(root: &Path, message: &Message) -> io::Result<Told> {
    let mut told = Told::default();
    let Ok(sockets) = std::fs::read_dir(root.join(CONTROL_DIR)) else {
        return Ok(told);
    };
    let mut text = String::new();
    match message {
        Message::Forget(keys) => {
            for key in keys {
                text.push_str(&format!("forget {}\n", key.hex()));
            }
        }
        Message::Clear => text.push_str("clear\n"),
    }
    for socket in sockets.flatten() {
        let path = socket.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        let mut stream = match UnixStream::connect(&path) {
            Ok(stream) => stream,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
                ) =>
            {
                // Nobody listens: the proxy that made it is gone.
                let _ = std::fs::remove_file(&path);
                told.stale += 1;
                continue;
            }
            Err(e) => return Err(unreachable(&path, e)),
        };
        let mut talk = || -> io::Result<String> {
            stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
            stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
            stream.write_all(text.as_bytes())?;
            stream.shutdown(std::net::Shutdown::Write)?;
            let mut reply = String::new();
            stream.read_to_string(&mut reply)?;
            Ok(reply)
        };
        match talk() {
            Ok(reply) if reply == "ok\n" => told.proxies += 1,
            Ok(reply) => {
                return Err(io::Error::other(format!(
                    "the proxy at {} answered {:?}",
                    path.display(),
                    reply.trim()
                )));
            }
            Err(e) => return Err(unreachable(&path, e)),
        }
    }
    Ok(told)
}

fn unreachable(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "a proxy runs on this folder ({}) but did not answer ({e}); it may still serve what was removed until it restarts",
            path.display()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_to_messages_and_garbage_is_refused() {
        let key = Key::for_url("http://e/");
        assert_eq!(
            parse_line(&format!("forget {}", key.hex())),
            Some(Message::Forget(vec![key]))
        );
        assert_eq!(parse_line("clear"), Some(Message::Clear));
        for bad in [
            "",
            "clear now",
            "forget",
            "forget zz",
            "forget 12",
            "purge x",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn a_dead_proxys_socket_is_removed_and_a_live_one_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let memory = Arc::new(MemoryTier::new(1 << 20));
        // A socket nobody listens on, as a killed proxy leaves behind.
        std::fs::create_dir_all(dir.path().join(CONTROL_DIR)).unwrap();
        let dead = dir.path().join(CONTROL_DIR).join("1.sock");
        drop(UnixListener::bind(&dead).unwrap());
        let live = listen(dir.path(), &store, &memory).unwrap();
        let told = notify(dir.path(), &Message::Clear).unwrap();
        assert_eq!(
            told,
            Told {
                proxies: 1,
                stale: 1
            }
        );
        assert!(!dead.exists());
        drop(live);
        let told = notify(dir.path(), &Message::Forget(vec![Key::for_url("x")])).unwrap();
        assert_eq!(told, Told::default(), "a dropped socket is gone");
    }
}
