//! The generated documentation: docs/reference.md must be what `porter docs reference` prints now,
//! so a flag added or changed without regenerating it fails here; man pages and completion scripts
//! come out of the same definitions.

use std::process::Command;

fn porter(args: &[&str]) -> std::process::Output {
    let output = Command::new(env!("CARGO_BIN_EXE_porter"))
        .args(args)
        .output()
        .expect("run porter");
    assert!(
        output.status.success(),
        "porter {args:?} failed: {output:?}"
    );
    output
}

#[test]
fn regression_reference_md_is_what_the_flags_generate() {
    let generated = String::from_utf8(porter(&["docs", "reference"]).stdout).expect("utf-8");
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/reference.md");
    let committed = std::fs::read_to_string(path).expect("read docs/reference.md");
    if generated != committed {
        let line = generated
            .lines()
            .zip(committed.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| generated.lines().count().min(committed.lines().count()));
        panic!(
            "docs/reference.md differs from the flags (first at line {}); regenerate it with\n    \
             cargo run -- docs reference > docs/reference.md",
            line + 1
        );
    }
}

#[test]
fn man_pages_and_completions_cover_every_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    porter(&["docs", "man", dir.path().to_str().expect("utf-8 path")]);
    for page in [
        "porter.1",
        "porter-proxy.1",
        "porter-fetch.1",
        "porter-serve.1",
        "porter-upper.1",
    ] {
        let text = std::fs::read_to_string(dir.path().join(page)).expect(page);
        assert!(text.contains(".TH"), "{page} is not a man page");
    }
    let proxy = std::fs::read_to_string(dir.path().join("porter-proxy.1")).expect("proxy page");
    assert!(
        proxy.contains("origin\\-timeout"),
        "the proxy page lists its flags"
    );
    for shell in ["bash", "zsh", "fish"] {
        let script = String::from_utf8(porter(&["completions", shell]).stdout).expect("utf-8");
        assert!(
            script.contains("origin-timeout"),
            "{shell} completes proxy flags"
        );
    }
}

/// `porter completions bash | head` panicked (clap_complete's writer met a closed pipe) and exited
/// 101 with a backtrace: a reader that stops early is no error.
#[test]
fn regression_completions_into_a_closed_pipe_end_quietly() {
    for shell in ["bash", "zsh", "fish"] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_porter"))
            .args(["completions", shell])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("porter starts");
        drop(child.stdout.take()); // the reader goes away before a byte is read
        let out = child.wait_with_output().expect("porter ends");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{shell}: {:?} {stderr}", out.status);
        assert!(!stderr.contains("panicked"), "{shell}: {stderr}");
    }
}
