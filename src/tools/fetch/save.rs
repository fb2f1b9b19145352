//! Writing a download: the body streams into a hidden temp file in the download folder
//! (`.name.part-<pid>`), which gets its final name only when the body is complete. The final name is
//! claimed with a hard link, which fails rather than overwrite, so an existing file is never replaced:
//! the next free ` (n)` name is taken instead. A temp file is removed on any failure.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::FetchError;
use super::naming;

/// Most ` (n)` names tried before giving up on a crowded folder.
const MAX_DUPLICATES: u32 = 10_000;

/// A download being written.
pub struct PartFile {
    dir: PathBuf,
    temp: PathBuf,
    file: Option<BufWriter<File>>,
}

impl PartFile {
    /// Creates the folder if needed and a temp file in it named after `hint`.
    pub fn create(dir: &Path, hint: &str) -> Result<PartFile, FetchError> {
        fs::create_dir_all(dir).map_err(|error| FetchError::Save {
            path: dir.to_path_buf(),
            error,
        })?;
        let temp = dir.join(format!(".{hint}.part-{}", std::process::id()));
        let file = File::create(&temp).map_err(|error| FetchError::Save {
            path: temp.clone(),
            error,
        })?;
        Ok(PartFile {
            dir: dir.to_path_buf(),
            temp,
            file: Some(BufWriter::with_capacity(64 * 1024, file)),
        })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), FetchError> {
        let result = match self.file.as_mut() {
            Some(file) => file.write_all(data),
            None => Err(io::Error::other("the download was already finished")),
        };
        result.map_err(|error| self.error(error))
    }

    fn error(&self, error: io::Error) -> FetchError {
        FetchError::Save {
            path: self.temp.clone(),
            error,
        }
    }

    /// Flushes and moves the file to `name`, or the first free numbered variant of it.
    pub fn finish(mut self, name: &str) -> Result<PathBuf, FetchError> {
        if let Some(file) = self.file.take() {
            file.into_inner()
                .map_err(|e| e.into_error())
                .and_then(|f| f.sync_data())
                .map_err(|error| self.error(error))?;
        }
        for n in 1..=MAX_DUPLICATES {
            let candidate = if n == 1 {
                name.to_string()
            } else {
                naming::numbered(name, n)
            };
            let path = self.dir.join(candidate);
            if self.claim(&path).map_err(|error| FetchError::Save {
                path: path.clone(),
                error,
            })? {
                return Ok(path);
            }
        }
        Err(FetchError::Save {
            path: self.dir.join(name),
            error: io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{MAX_DUPLICATES} files of that name exist already"),
            ),
        })
    }

    /// Gives the temp file the name `path` unless it is taken; returns whether it did.
    fn claim(&self, path: &Path) -> io::Result<bool> {
        match fs::hard_link(&self.temp, path) {
            Ok(()) => {
                fs::remove_file(&self.temp)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            // File systems without hard links: check, then rename (a small race, but no overwrite of
            // anything that existed when we looked).
            Err(_) if fs::symlink_metadata(path).is_ok() => Ok(false),
            Err(_) => fs::rename(&self.temp, path).map(|()| true),
        }
    }
}

impl Drop for PartFile {
    fn drop(&mut self) {
        // Still present only if the download did not finish.
        drop(self.file.take());
        let _ = fs::remove_file(&self.temp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_overwrites_and_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let mut paths = Vec::new();
        for body in ["one", "two", "three"] {
            let mut part = PartFile::create(dir.path(), "page.html").unwrap();
            part.write(body.as_bytes()).unwrap();
            paths.push(part.finish("Page.html").unwrap());
        }
        let names: Vec<_> = paths
            .iter()
            .map(|p| p.file_name().unwrap().to_str().unwrap())
            .collect();
        assert_eq!(names, ["Page.html", "Page (2).html", "Page (3).html"]);
        assert_eq!(fs::read_to_string(&paths[0]).unwrap(), "one");

        let mut part = PartFile::create(dir.path(), "x").unwrap();
        part.write(b"partial").unwrap();
        drop(part);
        let mut left: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, ["Page (2).html", "Page (3).html", "Page.html"]);
    }
}
