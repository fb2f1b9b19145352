//! `porter proxy --config FILE`: a TOML file whose keys are the proxy's flags.
//!
//! The file is not mirrored by a second set of structs: each `key = value` becomes the argument
//! `--key=value` (an array repeats the flag, `true` is the bare flag, `false` leaves it out) and clap
//! parses the file's arguments followed by the command line's. So every `porter proxy` flag, present
//! and future, has its key, with the same parser, default and check. A flag given on the command line
//! replaces the file's key of the same name (for repeatable flags too: `--allow` on the command line
//! replaces the file's `allow` list).
//!
//! ```text
//!   porter.toml ──toml──> [(key, line, value)] ──> ["--deny-host=a", "--deny-host=b", "--no-cache"]
//!                                                           │ minus keys the command line gives
//!   command line ──────────────────────────────────────────>├──> clap ──> ProxyArgs ──> ProxyConfig
//! ```
//!
//! Each key is first parsed (and turned into a configuration) on its own, so a bad value is reported
//! with its line and key rather than as a flag the user never typed.

use std::collections::{HashMap, HashSet};
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, ArgMatches, Args, FromArgMatches};

use crate::cli::ProxyArgs;
use crate::proxy::ProxyConfig;

/// Where a proxy's configuration comes from: an optional file and the command line (the arguments
/// after `proxy`). Kept by the running proxy so SIGHUP can read both again.
#[derive(Debug, Clone, Default)]
pub struct ConfigSource {
    pub file: Option<PathBuf>,
    pub command_line: Vec<OsString>,
}

/// Keys whose `USER:PASSWORD` values `--check` prints with the password masked.
const SECRETS: [&str; 2] = ["auth-user", "parent-auth"];

/// Flags of `porter proxy` that say how to read the settings rather than being one, so they have no
/// key in the config file (the reference in src/cli/docs.rs leaves them out of its key list too).
pub const NOT_KEYS: [&str; 4] = ["config", "check", "help", "version"];

/// A configuration that cannot be used, saying where it went wrong.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The path is not a regular file (a FIFO, a device, a folder): refused without reading, since
    /// opening or reading a FIFO blocks until a writer comes, and a reload must never hang.
    NotAFile {
        path: PathBuf,
        /// What it is instead: `a FIFO`, `a folder`, ...
        kind: &'static str,
    },
    /// The file is not TOML.
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// A key that names no `porter proxy` flag.
    UnknownKey {
        path: PathBuf,
        line: usize,
        key: String,
        /// The nearest key there is, as the command line's "did you mean" would name it.
        suggestion: Option<String>,
    },
    /// A key naming a flag that says how to read the settings (`config`, `check`): command line only.
    NotAKey {
        path: PathBuf,
        line: usize,
        key: String,
    },
    /// A key whose value the flag refuses.
    BadValue {
        path: PathBuf,
        line: usize,
        key: String,
        message: String,
    },
    /// The command line itself (or the file and command line together) is refused.
    Invalid(String),
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, error } => {
                write!(f, "cannot read config file {}: {error}", path.display())
            }
            ConfigError::NotAFile { path, kind } => write!(
                f,
                "config file {} is {kind}, not a regular file; --config takes a regular file",
                path.display()
            ),
            ConfigError::Syntax {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: not valid TOML: {message}", path.display()),
            ConfigError::UnknownKey {
                path,
                line,
                key,
                suggestion,
            } => {
                write!(f, "{}:{line}: key `{key}`: no such setting", path.display())?;
                match suggestion {
                    Some(near) => write!(f, "; did you mean `{near}`?"),
                    None => f.write_str(" (keys are the flags of `porter proxy --help`)"),
                }
            }
            ConfigError::NotAKey { path, line, key } => write!(
                f,
                "{}:{line}: `{key}` cannot be set in the config file (give --{key} on the command line)",
                path.display()
            ),
            ConfigError::BadValue {
                path,
                line,
                key,
                message,
            } => write!(f, "{}:{line}: key `{key}`: {message}", path.display()),
            ConfigError::Invalid(message) => f.write_str(message),
        }
    }
}

impl std::error::Error for ConfigError {}

/// One key of the file, as the arguments it stands for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyArgs {
    pub key: String,
    pub line: usize,
    pub args: Vec<OsString>,
}

/// The parsed flags and, for `--check`, every setting with its effective value and where it came from.
pub struct Loaded {
    pub args: ProxyArgs,
    pub matches: ArgMatches,
    /// The file's keys that took effect (not replaced by the command line), with their lines.
    pub from_file: HashMap<String, usize>,
}

/// The clap command of `porter proxy`, on its own.
fn proxy_command() -> clap::Command {
    ProxyArgs::augment_args(clap::Command::new("porter proxy")).no_binary_name(true)
}

/// The first line of a clap error, without its `error: ` label.
fn clap_message(error: &clap::Error) -> String {
    let text = error.render().to_string();
    let first = text.lines().next().unwrap_or_default();
    first.strip_prefix("error: ").unwrap_or(first).to_string()
}

/// Turns TOML text into the arguments each key stands for, in file order.
pub fn file_args(path: &Path, text: &str) -> Result<Vec<KeyArgs>, ConfigError> {
    use toml::{Spanned, Value};
    type Doc = std::collections::BTreeMap<Spanned<String>, Spanned<Value>>;
    let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
    let doc: Doc = toml::from_str(text).map_err(|e| ConfigError::Syntax {
        path: path.to_path_buf(),
        line: e.span().map_or(1, |s| line_of(s.start)),
        message: e.message().trim().to_string(),
    })?;
    let mut keys = Vec::with_capacity(doc.len());
    for (key, value) in doc {
        let line = line_of(key.span().start);
        let key = key.into_inner();
        let bad = |message: &str| ConfigError::BadValue {
            path: path.to_path_buf(),
            line,
            key: key.clone(),
            message: message.to_string(),
        };
        let flag = format!("--{key}");
        let scalar = |value: &Value| -> Result<Option<OsString>, ConfigError> {
            match value {
                Value::String(s) => Ok(Some(format!("{flag}={s}").into())),
                Value::Integer(n) => Ok(Some(format!("{flag}={n}").into())),
                Value::Float(x) => Ok(Some(format!("{flag}={x}").into())),
                Value::Boolean(true) => Ok(Some(flag.clone().into())),
                Value::Boolean(false) => Ok(None),
                Value::Datetime(_) => Err(bad("a date is not a setting value")),
                Value::Array(_) | Value::Table(_) => {
                    Err(bad("expected a string, number or boolean"))
                }
            }
        };
        let args = match value.into_inner() {
            Value::Table(_) => {
                return Err(bad(
                    "a table is not a setting: keys are flags, written at the top level",
                ));
            }
            Value::Array(items) => {
                let mut args = Vec::with_capacity(items.len());
                for item in &items {
                    args.extend(scalar(item)?);
                }
                args
            }
            other => scalar(&other)?.into_iter().collect(),
        };
        keys.push(KeyArgs { key, line, args });
    }
    keys.sort_by_key(|k| k.line);
    Ok(keys)
}

/// What a file type is, for the error that refuses it.
fn kind_of(file_type: std::fs::FileType) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_dir() {
        "a folder"
    } else if file_type.is_char_device() || file_type.is_block_device() {
        "a device"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// Reads `path` if it is a regular file, never blocking: it is checked before it is opened (so a
/// device is not even opened), opened with `O_NONBLOCK` (so a FIFO put in its place meanwhile does
/// not wait for a writer) and checked again on the open descriptor.
fn read_regular_file(path: &Path) -> Result<String, ConfigError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let read_error = |error| ConfigError::Read {
        path: path.to_path_buf(),
        error,
    };
    let not_a_file = |meta: &std::fs::Metadata| ConfigError::NotAFile {
        path: path.to_path_buf(),
        kind: kind_of(meta.file_type()),
    };
    let meta = std::fs::metadata(path).map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NONBLOCK.bits() as i32)
        .open(path)
        .map_err(read_error)?;
    let meta = file.metadata().map_err(read_error)?;
    if !meta.is_file() {
        return Err(not_a_file(&meta));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(read_error)?;
    Ok(text)
}

/// The key `typo` most likely meant: the same flag spelt with `_` for `-` (TOML's habit), else the
/// closest by Jaro similarity above 0.7, the measure and threshold clap's own "did you mean" uses
/// (clap's `parser/features/suggestions.rs`), so file and command line suggest alike.
fn nearest_key(typo: &str, keys: &HashSet<String>) -> Option<String> {
    let dashed = typo.replace('_', "-");
    if keys.contains(&dashed) && !NOT_KEYS.contains(&dashed.as_str()) {
        return Some(dashed);
    }
    keys.iter()
        .filter(|k| !NOT_KEYS.contains(&k.as_str()))
        .map(|k| (strsim::jaro(&dashed, k), k))
        .filter(|(score, _)| *score > 0.7)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, k)| k.clone())
}

/// Reads the configuration: the file (if any) under the command line.
pub fn load(source: &ConfigSource) -> Result<Loaded, ConfigError> {
    let command = proxy_command();
    let from_command_line = command
        .clone()
        .try_get_matches_from(&source.command_line)
        .map_err(|e| ConfigError::Invalid(e.render().to_string().trim_end().to_string()))?;
    let Some(path) = &source.file else {
        let args = ProxyArgs::from_arg_matches(&from_command_line)
            .map_err(|e| ConfigError::Invalid(clap_message(&e)))?;
        return Ok(Loaded {
            args,
            matches: from_command_line,
            from_file: HashMap::new(),
        });
    };
    let text = read_regular_file(path)?;
    let keys = file_args(path, &text)?;

    // Long flag name -> clap id, and the flags the command line gives (which replace the file's).
    let mut overridden = HashSet::new();
    let mut longs = HashSet::new();
    for arg in command.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        longs.insert(long.to_string());
        if from_command_line.value_source(arg.get_id().as_str()) == Some(ValueSource::CommandLine) {
            overridden.insert(long.to_string());
        }
    }

    let mut combined: Vec<OsString> = Vec::new();
    let mut from_file = HashMap::new();
    for key in &keys {
        let bad = |message: String| ConfigError::BadValue {
            path: path.clone(),
            line: key.line,
            key: key.key.clone(),
            message,
        };
        if NOT_KEYS.contains(&key.key.as_str()) {
            return Err(ConfigError::NotAKey {
                path: path.clone(),
                line: key.line,
                key: key.key.clone(),
            });
        }
        if !longs.contains(&key.key) {
            return Err(ConfigError::UnknownKey {
                path: path.clone(),
                line: key.line,
                key: key.key.clone(),
                suggestion: nearest_key(&key.key, &longs),
            });
        }
        // The key alone, with every other setting at its default: its own errors are its own. A
        // flag that needs or excludes another is judged with the whole file below instead.
        match command.clone().try_get_matches_from(&key.args) {
            Ok(alone) => {
                ProxyArgs::from_arg_matches(&alone)
                    .map_err(|e| bad(clap_message(&e)))?
                    .into_config()
                    .map_err(|e| bad(e.to_string()))?;
            }
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::MissingRequiredArgument | ErrorKind::ArgumentConflict
                ) => {}
            Err(e) => return Err(bad(clap_message(&e))),
        }
        if !overridden.contains(&key.key) {
            combined.extend(key.args.iter().cloned());
            from_file.insert(key.key.clone(), key.line);
        }
    }
    combined.extend(source.command_line.iter().cloned());
    let matches = command
        .try_get_matches_from(&combined)
        .map_err(|e| ConfigError::Invalid(clap_message(&e)))?;
    let args = ProxyArgs::from_arg_matches(&matches)
        .map_err(|e| ConfigError::Invalid(clap_message(&e)))?;
    Ok(Loaded {
        args,
        matches,
        from_file,
    })
}

/// Reads the configuration and validates it into the proxy's configuration.
pub fn load_config(source: &ConfigSource) -> Result<ProxyConfig, ConfigError> {
    load(source)?
        .args
        .into_config()
        .map_err(|e| ConfigError::Invalid(e.to_string()))
}

/// The effective configuration as a TOML file, each key with where its value came from; passwords
/// are masked.
pub fn effective_toml(loaded: &Loaded) -> String {
    let matches = &loaded.matches;
    let mut out = String::from("# the effective configuration of porter proxy\n");
    for arg in proxy_command().get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if NOT_KEYS.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|raw| {
                raw.map(|v| {
                    let v = v.to_string_lossy();
                    match v.split_once(':') {
                        Some((user, _)) if SECRETS.contains(&long) => format!("{user}:********"),
                        _ => v.into_owned(),
                    }
                })
                .collect()
            })
            .unwrap_or_default();
        let origin = match (loaded.from_file.get(long), matches.value_source(id)) {
            (Some(line), _) => format!("  # config file, line {line}"),
            (None, Some(ValueSource::CommandLine)) => "  # command line".to_string(),
            (None, Some(ValueSource::DefaultValue)) => "  # default".to_string(),
            _ => String::new(),
        };
        let toml_value = |v: &String| -> String {
            if v == "true" || v == "false" || v.parse::<i64>().is_ok() {
                v.clone()
            } else {
                toml::Value::String(v.clone()).to_string()
            }
        };
        let repeated = matches!(arg.get_action(), ArgAction::Append);
        let line = match (repeated, values.as_slice()) {
            (true, values) => format!(
                "{long} = [{}]",
                values.iter().map(toml_value).collect::<Vec<_>>().join(", ")
            ),
            (false, []) => format!("# {long} is not set"),
            (false, [one, ..]) => format!("{long} = {}", toml_value(one)),
        };
        out.push_str(&line);
        out.push_str(&origin);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_text(text: &str, command_line: &[&str]) -> Result<Loaded, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("porter.toml");
        std::fs::write(&path, text).unwrap();
        load(&ConfigSource {
            file: Some(path),
            command_line: command_line.iter().map(OsString::from).collect(),
        })
    }

    #[test]
    fn keys_become_flags_arrays_repeat_and_booleans_are_bare() {
        let keys = file_args(
            Path::new("p.toml"),
            "workers = 3\ndeny-host = [\"a.test\", \"*.b.test\"]\nno-cache = true\nvia = false\n",
        )
        .unwrap();
        let args: Vec<_> = keys
            .iter()
            .map(|k| (k.key.as_str(), k.line, &k.args))
            .collect();
        assert_eq!(
            args[0],
            ("workers", 1, &vec![OsString::from("--workers=3")])
        );
        assert_eq!(
            args[1].2,
            &vec![
                OsString::from("--deny-host=a.test"),
                "--deny-host=*.b.test".into()
            ]
        );
        assert_eq!(args[2].2, &vec![OsString::from("--no-cache")]);
        assert!(args[3].2.is_empty());
    }

    #[test]
    fn the_command_line_replaces_the_files_keys() {
        let loaded = load_text(
            "workers = 3\nallow = [\"10.0.0.0/8\"]\norigin-timeout = \"5s\"\n",
            &[
                "--workers",
                "7",
                "--allow",
                "192.168.0.0/16",
                "--allow",
                "127.0.0.1/32",
            ],
        )
        .unwrap();
        let config = loaded.args.into_config().unwrap();
        assert_eq!(config.server.workers, 7);
        assert_eq!(config.server.allow.len(), 2, "{:?}", config.server.allow);
        assert_eq!(config.origin_timeout, std::time::Duration::from_secs(5));
    }

    #[test]
    fn regression_config_file_typos_get_a_did_you_mean() {
        let error = load_text("origin_timeout = \"5s\"\n", &[]).err().unwrap();
        assert!(
            error
                .to_string()
                .ends_with("did you mean `origin-timeout`?"),
            "{error}"
        );
        let error = load_text("orgin-timeout = \"5s\"\n", &[]).err().unwrap();
        assert!(
            error
                .to_string()
                .ends_with("did you mean `origin-timeout`?"),
            "{error}"
        );
        let error = load_text("zzzzzz = 1\n", &[]).err().unwrap();
        assert!(error.to_string().contains("porter proxy --help"), "{error}");
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let error = load_text("workers = 2\n\nlisten = \"nowhere\"\n", &[])
            .err()
            .unwrap();
        let text = error.to_string();
        assert!(text.contains(":3: key `listen`:"), "{text}");
        let error = load_text("# a comment\nwrokers = 2\n", &[]).err().unwrap();
        assert!(
            error
                .to_string()
                .contains(":2: key `wrokers`: no such setting; did you mean `workers`?"),
            "{error}"
        );
        let error = load_text("auth-user = [\"nopassword\"]\n", &[])
            .err()
            .unwrap();
        assert!(
            error
                .to_string()
                .contains(":1: key `auth-user`: an auth user must be"),
            "{error}"
        );
        let error = load_text("workers = [\n", &[]).err().unwrap();
        assert!(matches!(error, ConfigError::Syntax { .. }), "{error}");
        let error = load_text("[proxy]\nworkers = 2\n", &[]).err().unwrap();
        assert!(
            error
                .to_string()
                .contains("key `proxy`: a table is not a setting"),
            "{error}"
        );
        let error = load_text("config = \"other.toml\"\n", &[]).err().unwrap();
        assert!(matches!(error, ConfigError::NotAKey { .. }), "{error}");
    }

    #[test]
    fn regression_config_and_check_in_the_file_are_refused_by_name_not_with_a_suggestion() {
        for (text, key) in [
            ("config = \"other.toml\"\n", "config"),
            ("workers = 2\ncheck = true\n", "check"),
        ] {
            let message = load_text(text, &[]).err().unwrap().to_string();
            assert!(
                message.contains(&format!("`{key}` cannot be set in the config file")),
                "{message}"
            );
            assert!(!message.contains("did you mean"), "{message}");
        }
    }

    #[test]
    fn a_value_starting_with_a_dash_stays_a_value() {
        let error = load_text("cache-dir = \"--no-cache\"\n", &[]).unwrap();
        let config = error.args.into_config().unwrap();
        assert_eq!(config.cache_dir, Some(PathBuf::from("--no-cache")));
    }

    /// Every flag, present and future, has its key: the printed configuration (every flag at its
    /// value) is itself a config file that loads to the same configuration.
    #[test]
    fn the_printed_configuration_loads_back_for_every_flag() {
        let loaded = load_text(
            "workers = 3\nallow = [\"10.0.0.0/8\"]\nvia = \"off\"\nno-cache = true\n",
            &["--refresh", "\\.deb$=30d"],
        )
        .unwrap();
        let printed = effective_toml(&loaded);
        let again = load_text(&printed, &[]).unwrap_or_else(|e| panic!("{e}\n{printed}"));
        let strip = |text: &str| -> Vec<String> {
            text.lines()
                .map(|l| l.split("  #").next().unwrap_or_default().to_string())
                .collect()
        };
        assert_eq!(strip(&effective_toml(&again)), strip(&printed));
        let flags = proxy_command()
            .get_arguments()
            .filter(|a| a.get_long().is_some_and(|l| !NOT_KEYS.contains(&l)))
            .count();
        assert_eq!(printed.lines().count(), flags + 1, "{printed}");
    }

    #[test]
    fn the_effective_configuration_masks_passwords() {
        let loaded = load_text("auth-user = [\"alice:s3cret\"]\nworkers = 2\n", &[]).unwrap();
        let text = effective_toml(&loaded);
        assert!(text.contains("auth-user = [\"alice:********\"]"), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("workers = 2  # config file, line 2"),
            "{text}"
        );
        assert!(
            text.contains("listen = \"127.0.0.1:3128\"  # default"),
            "{text}"
        );
    }
}
