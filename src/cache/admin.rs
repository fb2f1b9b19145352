//! `porter cache`: look into and tidy a cache folder from the command line, with or without a proxy
//! running on it (entries are whole files, so removing one never leaves another half-written).
//! `purge` and `clear` then tell the running proxies what is gone ([`control`]), so none of them
//! serves it again from memory or counts it on its status page.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use super::control::{self, Message};
use super::entry::{self, Stored};
use super::key::Key;
use super::policy;

/// What `porter cache` should do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheCommand {
    Stats,
    List,
    Purge(String),
    Clear,
}

/// One entry file as seen by a scan.
struct Scanned {
    key: Key,
    path: PathBuf,
    url: String,
    bytes: u64,
    stored: Stored,
}

/// Runs a command on the folder and returns the text to print.
pub fn run(dir: &Path, command: &CacheCommand) -> io::Result<String> {
    if !dir.is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("{} is not a cache folder", dir.display()),
        ));
    }
    let (entries, damaged) = scan(dir);
    let mut out = String::new();
    match command {
        CacheCommand::Stats => {
            let responses: Vec<&Scanned> = entries
                .iter()
                .filter(|e| matches!(e.stored, Stored::Response(_)))
                .collect();
            let bytes: u64 = entries.iter().map(|e| e.bytes).sum();
            let oldest = responses
                .iter()
                .filter_map(|e| match &e.stored {
                    Stored::Response(meta) => Some((meta.response_time, &e.url)),
                    Stored::VaryMarker { .. } => None,
                })
                .min_by_key(|(time, _)| *time);
            let _ = writeln!(out, "folder:   {}", dir.display());
            let _ = writeln!(out, "entries:  {}", responses.len());
            let _ = writeln!(out, "bytes:    {bytes}");
            match oldest {
                Some((time, url)) => {
                    let _ = writeln!(out, "oldest:   {} ({url})", httpdate::fmt_http_date(time));
                }
                None => out.push_str("oldest:   -\n"),
            }
            if damaged > 0 {
                let _ = writeln!(out, "damaged:  {damaged} (removed on next read)");
            }
        }
        CacheCommand::List => {
            let now = SystemTime::now();
            for e in &entries {
                if let Stored::Response(meta) = &e.stored {
                    let lifetime = policy::freshness_lifetime(&meta.head, meta.response_time);
                    let age =
                        policy::current_age(&meta.head, meta.request_time, meta.response_time, now);
                    let expiry = match lifetime.checked_sub(age) {
                        Some(left) if !left.is_zero() => format!("fresh {}s", left.as_secs()),
                        _ => "stale".to_string(),
                    };
                    let _ = writeln!(out, "{}\t{}\t{}", e.url, e.bytes, expiry);
                }
            }
        }
        CacheCommand::Purge(url) => {
            let removed: Vec<Key> = entries
                .iter()
                .filter(|e| &e.url == url && fs::remove_file(&e.path).is_ok())
                .map(|e| e.key)
                .collect();
            if removed.is_empty() {
                return Err(io::Error::new(
                    io::ErrorKind::NotFound,
                    format!("{url} is not in the cache"),
                ));
            }
            let told = control::notify(dir, &Message::Forget(removed.clone()))?;
            let _ = writeln!(
                out,
                "purged {url} ({} files){}",
                removed.len(),
                told_text(told.proxies)
            );
        }
        CacheCommand::Clear => {
            let removed = entries
                .iter()
                .filter(|e| fs::remove_file(&e.path).is_ok())
                .count();
            let told = control::notify(dir, &Message::Clear)?;
            let _ = writeln!(
                out,
                "removed {removed} files from {}{}",
                dir.display(),
                told_text(told.proxies)
            );
        }
    }
    Ok(out)
}

fn told_text(proxies: usize) -> String {
    match proxies {
        0 => String::new(),
        1 => "; the running proxy forgot them".to_string(),
        n => format!("; the {n} running proxies forgot them"),
    }
}

/// Reads the head of every entry file; returns the readable ones and the count of damaged ones.
fn scan(dir: &Path) -> (Vec<Scanned>, usize) {
    let mut entries = Vec::new();
    let mut damaged = 0;
    for sub in fs::read_dir(dir).into_iter().flatten().flatten() {
        if sub.file_name().len() != 2 {
            continue;
        }
        let dir_name = sub.file_name().to_string_lossy().into_owned();
        for file in fs::read_dir(sub.path()).into_iter().flatten().flatten() {
            let Some(key) = Key::from_path_parts(&dir_name, &file.file_name().to_string_lossy())
            else {
                continue;
            };
            let path = file.path();
            let Ok(mut f) = File::open(&path) else {
                continue;
            };
            let bytes = f.metadata().map(|m| m.len()).unwrap_or(0);
            match entry::decode(&mut io::BufReader::new(&mut f), bytes) {
                Ok(decoded) => entries.push(Scanned {
                    key,
                    path,
                    url: decoded.url,
                    bytes,
                    stored: decoded.stored,
                }),
                Err(_) => damaged += 1,
            }
        }
    }
    entries.sort_by(|a, b| a.url.cmp(&b.url));
    (entries, damaged)
}
