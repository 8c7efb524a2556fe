//! The web configuration cases of `testdata/`, as exporter-toolkit keeps them: every
//! `*.good.yml` must load, every `*.bad.yml` must be refused with a message that says what to
//! fix. Adding a case is adding a file.
//!
//! - A `.bad.yml` file ends with one `# error: WORDS` line per piece of text the error message
//!   must contain (at least one; comments at the end do not move the line numbers of the
//!   YAML above them).
//! - A `.good.yml` file says what it turns on with `# enables: tls` and `# enables: basic_auth`
//!   lines; what it does not list must stay off.
//!
//! Relative paths resolve against `/nonexistent`, so a file naming a certificate fails to read
//! it.

use std::path::{Path, PathBuf};

use promdrop_webconfig::WebConfig;

const BASE: &str = "/nonexistent";

fn cases(suffix: &str) -> Vec<(PathBuf, String)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("testdata");
    let mut cases: Vec<(PathBuf, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.to_string_lossy().ends_with(suffix))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            (path, text)
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no {suffix} file in {}", dir.display());
    cases
}

/// The values of the `# KEY: value` comment lines of `text`.
fn directives<'a>(text: &'a str, key: &str) -> Vec<&'a str> {
    let prefix = format!("# {key}:");
    text.lines()
        .filter_map(|line| line.strip_prefix(prefix.as_str()))
        .map(str::trim)
        .collect()
}

#[test]
fn good_files_load_and_enable_what_they_say() {
    for (path, text) in cases(".good.yml") {
        let config = WebConfig::from_yaml(&text, BASE)
            .unwrap_or_else(|e| panic!("{}: refused: {e}", path.display()));
        let enables = directives(&text, "enables");
        for word in &enables {
            assert!(
                ["tls", "basic_auth"].contains(word),
                "{}: unknown `# enables: {word}`",
                path.display()
            );
        }
        assert_eq!(
            config.tls_enabled(),
            enables.contains(&"tls"),
            "{}: TLS",
            path.display()
        );
        assert_eq!(
            config.basic_auth_enabled(),
            enables.contains(&"basic_auth"),
            "{}: basic auth",
            path.display()
        );
    }
}

#[test]
fn bad_files_are_refused_with_a_message_that_says_what_to_fix() {
    for (path, text) in cases(".bad.yml") {
        let words = directives(&text, "error");
        assert!(!words.is_empty(), "{}: no `# error:` line", path.display());
        let message = match WebConfig::from_yaml(&text, BASE) {
            Ok(c) => panic!("{}: expected an error, got {c:?}", path.display()),
            Err(e) => e.to_string(),
        };
        for word in words {
            assert!(
                message.contains(word),
                "{}: {message:?} lacks {word:?}",
                path.display()
            );
        }
    }
}
