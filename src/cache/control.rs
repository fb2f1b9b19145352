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
//!   (refused: PID.lock not held, the proxy is gone: remove its files;
//!             PID.lock held, the proxy lives but did not confirm: an error)
//! ```
//!
//! A line the proxy cannot use (not UTF-8, longer than [`MAX_LINE`], an unknown verb) gets an
//! `error: …` answer, and a panic while answering is caught, so the thread outlives any input. Were
//! the socket still to refuse, the command must not take the proxy for dead: it would remove the
//! socket, print success, and the proxy would go on serving the entry from memory. So each proxy
//! holds an exclusive `flock` on `control/PID.lock` for as long as it runs (the kernel drops it when
//! the process dies, however it dies); a refused socket whose lock is free is a dead proxy's, one
//! whose lock is held is a live proxy that did not confirm, and the command fails.

use std::fs::File;
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
/// The longest line a proxy reads: `forget` and 64 hex digits fit with room to spare.
pub const MAX_LINE: usize = 128;
/// How much of a line an error answer quotes.
const QUOTED: usize = 80;

/// What the command tells a running proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// These entry files were removed.
    Forget(Vec<Key>),
    /// The folder was emptied: forget everything whose file is gone.
    Clear,
}

/// Why a line was refused; the proxy answers `error: ` and this.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineError {
    NotUtf8(String),
    TooLong,
    Unknown(String),
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineError::NotUtf8(line) => write!(f, "line is not UTF-8: {line:?}"),
            LineError::TooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            LineError::Unknown(line) => write!(f, "unknown line {line:?}"),
        }
    }
}

/// A line's first [`QUOTED`] bytes for an error answer, invalid UTF-8 replaced.
fn quoted(line: &[u8]) -> String {
    String::from_utf8_lossy(&line[..line.len().min(QUOTED)]).into_owned()
}

/// A proxy's listening socket; dropping it stops the thread and removes the socket file, then the
/// lock file whose lock says this proxy is alive.
pub struct ControlSocket {
    path: PathBuf,
    lock_path: PathBuf,
    _lock: File,
    stop: Arc<AtomicBool>,
}

/// `control/PID.lock` beside `control/PID.sock`.
fn lock_path_of(socket: &Path) -> PathBuf {
    socket.with_extension("lock")
}

/// Creates and locks this process's lock file. A leftover of a dead process with our pid is
/// replaced, not reused: a command may hold a lock on that old file while deciding it is stale.
fn take_lock(path: &Path) -> io::Result<File> {
    let _ = std::fs::remove_file(path);
    let file = crate::perms::create_private_file(path)?;
    rustix::fs::flock(&file, rustix::fs::FlockOperation::NonBlockingLockExclusive)?;
    Ok(file)
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
    // The lock first: a socket anyone can see always has its owner's lock behind it.
    let lock_path = lock_path_of(&path);
    let lock = take_lock(&lock_path)?;
    // A socket file of a dead process with our pid would make bind fail.
    let _ = std::fs::remove_file(&path);
    let listener = UnixListener::bind(&path).inspect_err(|_| {
        let _ = std::fs::remove_file(&lock_path);
    })?;
    let stop = Arc::new(AtomicBool::new(false));
    let (store, memory, flag) = (
        Arc::downgrade(store),
        Arc::downgrade(memory),
        Arc::clone(&stop),
    );
    std::thread::Builder::new()
        .name("cache-control".into())
        .spawn(move || serve(listener, store, memory, flag))?;
    Ok(ControlSocket {
        path,
        lock_path,
        _lock: lock,
        stop,
    })
}

impl Drop for ControlSocket {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept so the thread sees the flag.
        let _ = UnixStream::connect(&self.path);
        let _ = std::fs::remove_file(&self.path);
        let _ = std::fs::remove_file(&self.lock_path);
    }
}

/// One command connection at a time: they are rare and short, and serial handling bounds the work.
/// Nothing a connection sends ends the loop: a panic while answering is caught and logged.
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
        let stream = match stream {
            Ok(stream) => stream,
            Err(e) => {
                // Out of descriptors, say: do not spin on it.
                log::warn!("cache: control socket accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        let answered = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            answer(stream, &store, &memory)
        }));
        match answered {
            Ok(Ok(forgotten)) => {
                log::info!("cache: forgot {forgotten} entries removed by porter cache")
            }
            Ok(Err(e)) => log::warn!("cache: control connection failed: {e}"),
            Err(_) => log::error!("cache: a control connection panicked; still listening"),
        }
    }
}

/// Reads the command's lines, acts on each, and answers `ok` (or `error: …` for the first line it
/// cannot use, after acting on the others). Everything sent is read before the answer, so the
/// sender gets it rather than a reset. Returns how many entries were forgotten.
fn answer(stream: UnixStream, store: &Store, memory: &MemoryTier) -> io::Result<usize> {
    stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
    stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
    let mut forgotten = 0;
    let mut bad = None;
    let mut reader = BufReader::new((&stream).take((MAX_LINE as u64 + 1) * MAX_LINES as u64));
    let mut line = Vec::with_capacity(MAX_LINE + 1);
    for _ in 0..MAX_LINES {
        line.clear();
        if (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut line)?
            == 0
        {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > MAX_LINE {
            bad.get_or_insert(LineError::TooLong);
            skip_line(&mut reader)?;
            continue;
        }
        match parse_line(&line) {
            Ok(Message::Forget(keys)) => {
                for key in keys {
                    memory.remove(&key);
                    store.forget(key);
                    forgotten += 1;
                }
            }
            Ok(Message::Clear) => {
                memory.clear();
                forgotten += store.forget_missing();
            }
            Err(e) => {
                bad.get_or_insert(e);
            }
        }
    }
    let reply = match bad {
        None => "ok\n".to_string(),
        Some(e) => format!("error: {e}\n"),
    };
    (&stream).write_all(reply.as_bytes())?;
    Ok(forgotten)
}

/// Reads and drops the rest of a line that was too long.
fn skip_line(reader: &mut impl BufRead) -> io::Result<()> {
    loop {
        let buf = reader.fill_buf()?;
        if buf.is_empty() {
            return Ok(());
        }
        match buf.iter().position(|&b| b == b'\n') {
            Some(end) => {
                reader.consume(end + 1);
                return Ok(());
            }
            None => {
                let n = buf.len();
                reader.consume(n);
            }
        }
    }
}

/// One line, without its newline. Slices only ASCII: a multi-byte character where the key's folder
/// part ends must be refused, not cut.
fn parse_line(line: &[u8]) -> Result<Message, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8(quoted(line)))?;
    let unknown = || LineError::Unknown(quoted(line));
    match text.split_once(' ') {
        Some(("forget", hex)) if hex.len() == 64 && hex.is_ascii() => {
            Key::from_path_parts(&hex[..2], &hex[2..])
                .map(|k| Message::Forget(vec![k]))
                .ok_or_else(unknown)
        }
        None if text == "clear" => Ok(Message::Clear),
        _ => Err(unknown()),
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

/// Tells every proxy running on the folder `root`, all of them even when one fails. A proxy that is
/// alive but does not confirm is an error: the command cannot promise the entry will not be served.
pub fn notify(root: &Path, message: &Message) -> io::Result<Told> {
    let mut told = Told::default();
    let sockets = match std::fs::read_dir(root.join(CONTROL_DIR)) {
        Ok(sockets) => sockets,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(told),
        Err(e) => {
            return Err(io::Error::new(
                e.kind(),
                format!(
                    "cannot look for running proxies in {}: {e}",
                    root.join(CONTROL_DIR).display()
                ),
            ));
        }
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
    let mut failures = Vec::new();
    for socket in sockets.flatten() {
        let path = socket.path();
        if path.extension().is_none_or(|e| e != "sock") {
            continue;
        }
        match tell(&path, &text) {
            Ok(Reached::Confirmed) => told.proxies += 1,
            Ok(Reached::Gone) => told.stale += 1,
            Err(e) => failures.push(e),
        }
    }
    if failures.is_empty() {
        return Ok(told);
    }
    let kind = failures[0].kind();
    let text: Vec<String> = failures.iter().map(ToString::to_string).collect();
    Err(io::Error::new(kind, text.join("; ")))
}

/// What one socket came to.
enum Reached {
    /// The proxy answered `ok`.
    Confirmed,
    /// Nobody listens and the proxy that made it is gone; its files were removed.
    Gone,
}

/// Sends the lines to one proxy and reads its answer.
fn tell(path: &Path, text: &str) -> io::Result<Reached> {
    let mut stream = match UnixStream::connect(path) {
        Ok(stream) => stream,
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
            ) =>
        {
            return match remove_if_gone(path)? {
                Owner::Gone => Ok(Reached::Gone),
                Owner::Alive => Err(unreachable(path, e)),
            };
        }
        Err(e) => return Err(unreachable(path, e)),
    };
    let mut talk = || -> io::Result<String> {
        stream.set_read_timeout(Some(ANSWER_TIMEOUT))?;
        stream.set_write_timeout(Some(ANSWER_TIMEOUT))?;
        stream.write_all(text.as_bytes())?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut reply = Vec::new();
        (&mut stream).take(64 * 1024).read_to_end(&mut reply)?;
        Ok(String::from_utf8_lossy(&reply).into_owned())
    };
    match talk() {
        Ok(reply) if reply == "ok\n" => Ok(Reached::Confirmed),
        Ok(reply) => Err(io::Error::other(format!(
            "the proxy at {} did not confirm: it answered {:?}; it may still serve what was removed until it restarts",
            path.display(),
            reply.trim()
        ))),
        Err(e) => Err(unreachable(path, e)),
    }
}

/// Whether the proxy that made a socket still runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Owner {
    Alive,
    /// Gone; its socket and lock file are removed.
    Gone,
}

/// Decides whether the proxy behind a socket that refuses is gone, by its lock file, and if it is
/// removes the socket and the lock file while holding the lock. A lock file replaced meanwhile is a
/// new proxy's with the same pid: alive. Without a lock file (a proxy from before lock files), a
/// process with the socket's pid counts as alive, so a live proxy's socket is never removed.
fn remove_if_gone(socket: &Path) -> io::Result<Owner> {
    use std::os::unix::fs::MetadataExt;
    let lock_path = lock_path_of(socket);
    match File::open(&lock_path) {
        Ok(lock) => {
            match rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockShared) {
                Ok(()) => {}
                Err(rustix::io::Errno::WOULDBLOCK) => return Ok(Owner::Alive),
                Err(e) => return Err(e.into()),
            }
            let (held, now) = (lock.metadata()?, std::fs::metadata(&lock_path));
            match now {
                Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => {}
                _ => return Ok(Owner::Alive),
            }
            let _ = std::fs::remove_file(socket);
            let _ = std::fs::remove_file(&lock_path);
            Ok(Owner::Gone)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let pid = socket.file_stem().and_then(|s| s.to_str());
            let alive = pid.is_some_and(|pid| Path::new("/proc").join(pid).exists());
            if alive {
                return Ok(Owner::Alive);
            }
            let _ = std::fs::remove_file(socket);
            Ok(Owner::Gone)
        }
        Err(e) => Err(e),
    }
}

fn unreachable(path: &Path, e: io::Error) -> io::Error {
    io::Error::new(
        e.kind(),
        format!(
            "a proxy runs on this folder ({}) but did not confirm ({e}); it may still serve what was removed until it restarts",
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
            parse_line(format!("forget {}", key.hex()).as_bytes()),
            Ok(Message::Forget(vec![key]))
        );
        assert_eq!(parse_line(b"clear"), Ok(Message::Clear));
        for bad in [
            "",
            "clear now",
            "forget",
            "forget zz",
            "forget 12",
            "purge x",
        ] {
            assert!(
                matches!(parse_line(bad.as_bytes()), Err(LineError::Unknown(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_multibyte_character_where_the_key_is_cut_is_refused_not_sliced() {
        // 64 bytes with "é" across the folder/file split at byte 2: slicing there panicked.
        let line = format!("forget a\u{e9}{}", "0".repeat(61));
        assert_eq!(line.len(), "forget ".len() + 64);
        assert!(matches!(
            parse_line(line.as_bytes()),
            Err(LineError::Unknown(_))
        ));
        // A character cut by the line's end is not UTF-8.
        let mut cut = b"forget ".to_vec();
        cut.extend_from_slice(&"\u{e9}".as_bytes()[..1]);
        assert!(matches!(parse_line(&cut), Err(LineError::NotUtf8(_))));
    }

    /// A socket nobody listens on, as a killed proxy leaves behind, with its lock file.
    fn dead_socket(root: &Path, pid: u32) -> PathBuf {
        std::fs::create_dir_all(root.join(CONTROL_DIR)).unwrap();
        let path = root.join(CONTROL_DIR).join(format!("{pid}.sock"));
        drop(UnixListener::bind(&path).unwrap());
        std::fs::write(lock_path_of(&path), b"").unwrap();
        path
    }

    #[test]
    fn a_dead_proxys_socket_is_removed_and_a_live_one_forgets() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let memory = Arc::new(MemoryTier::new(1 << 20));
        let dead = dead_socket(dir.path(), 1);
        let live = listen(dir.path(), &store, &memory).unwrap();
        let told = notify(dir.path(), &Message::Clear).unwrap();
        assert_eq!(
            told,
            Told {
                proxies: 1,
                stale: 1
            }
        );
        assert!(!dead.exists() && !lock_path_of(&dead).exists());
        drop(live);
        let told = notify(dir.path(), &Message::Forget(vec![Key::for_url("x")])).unwrap();
        assert_eq!(told, Told::default(), "a dropped socket is gone");
    }

    #[test]
    fn a_refusing_socket_whose_proxy_holds_its_lock_is_an_error_and_stays() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dead_socket(dir.path(), 2);
        // The proxy is alive (this process holds its lock) but its socket refuses.
        let lock = File::open(lock_path_of(&socket)).unwrap();
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
        let error = notify(dir.path(), &Message::Clear).unwrap_err();
        assert!(error.to_string().contains("did not confirm"), "{error}");
        assert!(socket.exists() && lock_path_of(&socket).exists());
        drop(lock);
        assert_eq!(
            notify(dir.path(), &Message::Clear).unwrap(),
            Told {
                proxies: 0,
                stale: 1
            }
        );
        assert!(!socket.exists());
    }

    #[test]
    fn bad_lines_get_an_error_answer_and_the_thread_keeps_answering() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), 1 << 20).unwrap();
        let memory = Arc::new(MemoryTier::new(1 << 20));
        let live = listen(dir.path(), &store, &memory).unwrap();
        let long = vec![b'x'; 10 * MAX_LINE];
        for bad in [
            &b"forget \xc3\n"[..],
            b"forget a\xc3\xa9\n",
            b"hello\n",
            &long,
        ] {
            let mut stream = UnixStream::connect(&live.path).unwrap();
            stream.set_read_timeout(Some(ANSWER_TIMEOUT)).unwrap();
            stream.write_all(bad).unwrap();
            stream.shutdown(std::net::Shutdown::Write).unwrap();
            let mut reply = String::new();
            stream.read_to_string(&mut reply).unwrap();
            assert!(reply.starts_with("error: "), "{reply:?}");
        }
        assert_eq!(notify(dir.path(), &Message::Clear).unwrap().proxies, 1);
    }
}
