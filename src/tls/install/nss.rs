//! NSS databases, which Chromium (and other Chrome-family browsers on Linux) and Firefox read
//! instead of the system store: Chromium's `$HOME/.pki/nssdb`, created empty when missing as
//! Chromium would, and every Firefox profile that has a `cert9.db`. The CA goes in with
//! `certutil -A -t C,,` (trusted to issue server certificates) under a nickname holding its
//! fingerprint, so `certutil -D` on uninstall removes exactly this CA.
//!
//! A database Porter created stays after uninstall: Chromium uses it for its own state too. Under
//! `sudo` the browsers meant are the invoking user's: their home (from the passwd database, not
//! `$HOME`), and every command runs as them through `setpriv`, so nothing in their home becomes
//! root's. The certificate goes to `certutil` on its standard input, so the user need not be able
//! to read the CA's folder.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::{
    Direction, InstallError, Outcome, Places, Step, Subject, SudoUser, Target, find_tool,
    run_command, run_command_with_input,
};

/// How commands run: as the running user, or as the user behind sudo.
struct Runner<'a> {
    certutil: PathBuf,
    sudo: Option<&'a SudoUser>,
}

impl Runner<'_> {
    /// `program` as the right user: `setpriv --reuid --regid --init-groups program` under sudo.
    fn command(&self, program: &Path) -> Command {
        match self.sudo {
            None => Command::new(program),
            Some(user) => {
                let mut command = Command::new("setpriv");
                command
                    .arg(format!("--reuid={}", user.uid))
                    .arg(format!("--regid={}", user.gid))
                    .arg("--init-groups")
                    .arg(program)
                    .env("HOME", &user.home);
                command
            }
        }
    }

    fn certutil(&self) -> Command {
        self.command(&self.certutil)
    }
}

/// The databases under `home`: Chromium's (whether or not it exists yet) and each Firefox
/// profile's (those with a `cert9.db`, the SQL format `sql:` reads).
pub fn databases(home: &Path) -> Vec<PathBuf> {
    let mut found = vec![home.join(".pki/nssdb")];
    for base in [".mozilla/firefox", "snap/firefox/common/.mozilla/firefox"] {
        let mut profiles: Vec<PathBuf> = fs::read_dir(home.join(base))
            .map(|entries| {
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.join("cert9.db").is_file())
                    .collect()
            })
            .unwrap_or_default();
        profiles.sort();
        found.extend(profiles);
    }
    found
}

/// Whether the database at `db` holds the nickname (false when it cannot be read).
fn holds(runner: &Runner, db: &Path, nickname: &str) -> bool {
    runner
        .certutil()
        .arg("-L")
        .arg("-d")
        .arg(sql(db))
        .args(["-n", nickname])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn sql(db: &Path) -> String {
    format!("sql:{}", db.display())
}

/// One line per existing database for `porter ca show`.
pub fn status(subject: &Subject, places: &Places) -> Vec<(String, String)> {
    let sudo = places.sudo_user.as_ref();
    let Some(home) = sudo.map(|u| &u.home).or(places.home.as_ref()) else {
        return vec![];
    };
    let certutil = find_tool("certutil").map(|certutil| Runner { certutil, sudo });
    databases(home)
        .into_iter()
        .filter(|db| db.join("cert9.db").is_file())
        .map(|db| {
            let answer = match &certutil {
                None => "unknown (certutil not found)".to_string(),
                Some(runner) if holds(runner, &db, &subject.nickname()) => {
                    format!("yes ({})", subject.nickname())
                }
                Some(_) => "no".to_string(),
            };
            (format!("NSS {}", db.display()), answer)
        })
        .collect()
}

/// Adds the CA to (or removes it from) every database.
pub fn apply(direction: Direction, subject: &Subject, places: &Places) -> Vec<Step> {
    let skipped = |place: &str, why: String| {
        vec![Step {
            target: Target::Nss,
            place: place.to_string(),
            outcome: Outcome::Skipped(why),
        }]
    };
    let sudo = places.sudo_user.as_ref();
    if sudo.is_some() && find_tool("setpriv").is_none() {
        return skipped(
            "NSS (browsers)",
            format!(
                "under sudo, without setpriv (util-linux) to run certutil as the user: run `porter \
                 ca {} --nss --ca-dir {}` without sudo",
                direction.as_str(),
                super::shell_quote(&subject.dir.display().to_string())
            ),
        );
    }
    let Some(home) = sudo.map(|u| &u.home).or(places.home.as_ref()) else {
        return skipped("NSS (browsers)", "HOME is not set".to_string());
    };
    let Some(certutil) = find_tool("certutil") else {
        return skipped(
            "NSS (browsers)",
            "certutil not found (apt-get install libnss3-tools, or dnf install nss-tools)"
                .to_string(),
        );
    };
    let runner = Runner { certutil, sudo };
    databases(home)
        .into_iter()
        .filter_map(|db| {
            let exists = db.join("cert9.db").is_file();
            if !exists && direction == Direction::Uninstall {
                return None;
            }
            let outcome =
                one(direction, &runner, &db, exists, subject).unwrap_or_else(Outcome::Failed);
            Some(Step {
                target: Target::Nss,
                place: format!("NSS {}", db.display()),
                outcome,
            })
        })
        .collect()
}

fn one(
    direction: Direction,
    runner: &Runner,
    db: &Path,
    exists: bool,
    subject: &Subject,
) -> Result<Outcome, InstallError> {
    let nickname = subject.nickname();
    let present = exists && holds(runner, db, &nickname);
    let mut did = Vec::new();
    match (direction, present) {
        (Direction::Install, true) => {
            return Ok(Outcome::Unchanged(format!("already holds {nickname}")));
        }
        (Direction::Uninstall, false) => {
            return Ok(Outcome::Unchanged(format!("does not hold {nickname}")));
        }
        (Direction::Install, false) => {
            if !exists {
                match runner.sudo {
                    None => crate::perms::create_private_dir_all(db).map_err(|error| {
                        InstallError::Io {
                            path: db.to_path_buf(),
                            error,
                        }
                    })?,
                    Some(_) => {
                        run_command(
                            runner
                                .command(Path::new("mkdir"))
                                .args(["-p", "-m", "0700"])
                                .arg(db),
                        )?;
                    }
                }
                run_command(
                    runner
                        .certutil()
                        .arg("-N")
                        .arg("-d")
                        .arg(sql(db))
                        .arg("--empty-password"),
                )?;
                did.push("created the database (certutil -N --empty-password)".to_string());
            }
            // No -i: the certificate comes on standard input (see the module doc).
            run_command_with_input(
                runner
                    .certutil()
                    .arg("-A")
                    .arg("-d")
                    .arg(sql(db))
                    .args(["-t", "C,,", "-n", &nickname, "-a"]),
                subject.cert_pem.as_bytes(),
            )?;
            did.push(format!("added {nickname} (certutil -A -t C,,)"));
        }
        (Direction::Uninstall, true) => {
            run_command(
                runner
                    .certutil()
                    .arg("-D")
                    .arg("-d")
                    .arg(sql(db))
                    .args(["-n", &nickname]),
            )?;
            did.push(format!("removed {nickname} (certutil -D)"));
        }
    }
    Ok(Outcome::Done(did.join("; ")))
}
