//! The JDK's `cacerts` keystore, which Java programs (Maven, Gradle, sbt, Jenkins agents) read
//! instead of the system store, through `keytool`. The JDK is the one whose `keytool` is first on
//! `PATH` (or in `$JAVA_HOME/bin`); its keystore is `lib/security/cacerts` (Java 9 on) or
//! `jre/lib/security/cacerts` (Java 8) under it. `--java-keystore` names another keystore, for
//! tests and for JDKs elsewhere. The alias holds the fingerprint, so `keytool -delete` removes
//! exactly this CA. The store password is the JDK's default, `changeit`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::{
    Direction, Outcome, Places, Step, Subject, Target, find_tool, root_command, run_command,
    writable,
};

const STORE_PASSWORD: &str = "changeit";

/// `keytool`: `$JAVA_HOME/bin/keytool`, else the first on `PATH`.
pub fn keytool() -> Option<PathBuf> {
    std::env::var_os("JAVA_HOME")
        .map(|home| PathBuf::from(home).join("bin/keytool"))
        .filter(|p| p.is_file())
        .or_else(|| find_tool("keytool"))
}

/// The keystore to change: `--java-keystore`, else the cacerts of `keytool`'s JDK. Under `--root`
/// other than `/` only `--java-keystore` is used (the JDK found is the running system's).
fn keystore(keytool: &Path, places: &Places) -> Result<PathBuf, String> {
    if let Some(path) = &places.java_keystore {
        return Ok(path.clone());
    }
    if !places.live() {
        return Err(format!(
            "--root {}: the JDK found is this system's, not the root's; give --java-keystore",
            places.root.display()
        ));
    }
    let real = keytool
        .canonicalize()
        .unwrap_or_else(|_| keytool.to_path_buf());
    let home = real
        .parent()
        .and_then(Path::parent)
        .ok_or_else(|| format!("no JDK folder above {}", real.display()))?;
    ["lib/security/cacerts", "jre/lib/security/cacerts"]
        .into_iter()
        .map(|p| home.join(p))
        .find(|p| p.exists())
        .ok_or_else(|| format!("no cacerts in the JDK at {}", home.display()))
}

fn has_alias(keytool: &Path, store: &Path, alias: &str) -> bool {
    Command::new(keytool)
        .arg("-list")
        .arg("-keystore")
        .arg(store)
        .args(["-storepass", STORE_PASSWORD, "-alias", alias])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// One line for `porter ca show`, or `None` without a JDK.
pub fn status(subject: &Subject, places: &Places) -> Option<(String, String)> {
    let keytool = keytool()?;
    let store = keystore(&keytool, places).ok()?;
    let answer = if has_alias(&keytool, &store, &subject.nickname()) {
        format!("yes ({})", subject.nickname())
    } else {
        "no".to_string()
    };
    Some((format!("Java {}", store.display()), answer))
}

/// Imports the CA into (or deletes it from) the keystore.
pub fn apply(direction: Direction, subject: &Subject, places: &Places) -> Step {
    let step = |place: String, outcome| Step {
        target: Target::Java,
        place,
        outcome,
    };
    let Some(keytool) = keytool() else {
        return step(
            "Java".to_string(),
            Outcome::Skipped("keytool not found (no JDK on PATH or in JAVA_HOME)".to_string()),
        );
    };
    let store = match keystore(&keytool, places) {
        Ok(store) => store,
        Err(why) => return step("Java".to_string(), Outcome::Skipped(why)),
    };
    let place = format!("Java {}", store.display());
    let alias = subject.nickname();
    let present = has_alias(&keytool, &store, &alias);
    if present == (direction == Direction::Install) {
        let text = if present {
            format!("already holds {alias}")
        } else {
            format!("does not hold {alias}")
        };
        return step(place, Outcome::Unchanged(text));
    }
    if !writable(&store) {
        return step(
            place,
            Outcome::NeedsRoot {
                what: format!("writing {}", store.display()),
                command: root_command(direction, Target::Java, subject, places),
            },
        );
    }
    let mut command = Command::new(&keytool);
    match direction {
        Direction::Install => command
            .args(["-importcert", "-noprompt", "-keystore"])
            .arg(&store)
            .args(["-storepass", STORE_PASSWORD, "-alias", &alias, "-file"])
            .arg(&subject.cert_path),
        Direction::Uninstall => command.args(["-delete", "-keystore"]).arg(&store).args([
            "-storepass",
            STORE_PASSWORD,
            "-alias",
            &alias,
        ]),
    };
    let outcome = match run_command(&mut command) {
        Ok(_) => Outcome::Done(match direction {
            Direction::Install => format!("imported as {alias} (keytool -importcert)"),
            Direction::Uninstall => format!("deleted {alias} (keytool -delete)"),
        }),
        Err(error) => Outcome::Failed(error),
    };
    step(place, outcome)
}
