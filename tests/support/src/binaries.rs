//! The workspace's binaries, for test packages that Cargo does not hand them to.
//!
//! Cargo gives `CARGO_BIN_EXE_<name>` only to a package's own tests; tests/e2e and
//! tests/torture run binaries of other packages, so they build them here, once per process,
//! with the profile they run in themselves.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

use anyhow::{Context, Result, anyhow, bail};

/// Names a `promdrop-exporter` to use instead of building one (any profile).
pub const EXPORTER_ENV: &str = "PROMDROP_TORTURE_EXPORTER";

/// Paths of the workspace binaries the end-to-end tests run.
#[derive(Debug, Clone)]
pub struct Binaries {
    /// `promdrop-exporter`.
    pub exporter: PathBuf,
    /// `promdrop` (the CLI: check, write, inspect, run).
    pub promdrop: PathBuf,
    /// The writer's example job (`crates/writer/examples/batch_job.rs`).
    pub batch_job: PathBuf,
}

/// The workspace's root directory.
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("the workspace root")
}

/// The directory of the binaries of the running profile: the running executable's directory
/// (`target/<profile>/` for a binary, `target/<profile>/deps/` for a test), so that
/// `CARGO_TARGET_DIR` and `--release` are followed.
fn profile_dir() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("finding the running executable")?;
    let mut dir = exe
        .parent()
        .ok_or_else(|| anyhow!("{} has no directory", exe.display()))?
        .to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    Ok(dir)
}

/// Builds the workspace's binaries once per process and returns the profile directory.
///
/// In the debug profile: `$CARGO test --workspace --no-run`, which builds every binary and
/// example with the features `cargo test --workspace` resolves, so that under that command it
/// finds everything built already (a `cargo build -p ...` would resolve other features and
/// compile the exporter again). In another profile (`--release`, a torture run): only
/// `promdrop-exporter`.
fn build() -> Result<&'static (PathBuf, String)> {
    static BUILT: OnceLock<std::result::Result<(PathBuf, String), String>> = OnceLock::new();
    BUILT
        .get_or_init(|| run_build().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow!("{e}"))
}

fn run_build() -> Result<(PathBuf, String)> {
    let dir = profile_dir()?;
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or_else(|| anyhow!("no profile directory in {}", dir.display()))?
        .to_string();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| OsString::from("cargo"));
    let mut command = Command::new(&cargo);
    match profile.as_str() {
        "debug" => command.args(["test", "--workspace", "--no-run"]),
        "release" => command.args(["build", "--release"]),
        other => command.args(["build", "--profile", other]),
    };
    if profile != "debug" {
        command.args(["-p", "promdrop-exporter", "--bin", "promdrop-exporter"]);
    }
    command
        .arg("--manifest-path")
        .arg(workspace_root().join("Cargo.toml"))
        .stdin(Stdio::null());
    let started = Instant::now();
    let output = command.output().with_context(|| {
        format!(
            "running {} to build the workspace's binaries (set CARGO, or {EXPORTER_ENV})",
            cargo.to_string_lossy()
        )
    })?;
    if !output.status.success() {
        bail!(
            "{command:?} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    eprintln!(
        "test support: {command:?} took {:.1} s",
        started.elapsed().as_secs_f64()
    );
    Ok((dir, profile))
}

/// The `promdrop-exporter` of the running profile, built on first use; [`EXPORTER_ENV`]
/// names another one and skips the build.
pub fn exporter() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os(EXPORTER_ENV) {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("{EXPORTER_ENV}={} is not a file", path.display());
        }
        return Ok(path);
    }
    let (dir, _) = build()?;
    existing(dir.join("promdrop-exporter"))
}

fn existing(path: PathBuf) -> Result<PathBuf> {
    if !path.is_file() {
        bail!(
            "{} is missing after the build (a --target or CARGO_TARGET_DIR mismatch? set \
             {EXPORTER_ENV})",
            path.display()
        );
    }
    Ok(path)
}

/// The exporter, the CLI and the writer's example job, built on first use (debug profile, as
/// `cargo test` builds). Fails the test, with Cargo's output, when a build fails.
pub fn binaries() -> &'static Binaries {
    static BINARIES: OnceLock<Binaries> = OnceLock::new();
    BINARIES.get_or_init(|| {
        let found = || -> Result<Binaries> {
            let (dir, profile) = build()?;
            if profile != "debug" {
                bail!("the end-to-end binaries are built in the debug profile only, not {profile}");
            }
            Ok(Binaries {
                exporter: exporter()?,
                promdrop: existing(dir.join("promdrop"))?,
                batch_job: existing(dir.join("examples").join("batch_job"))?,
            })
        };
        found().unwrap_or_else(|e| panic!("{e:#}"))
    })
}
