//! Self-describing files and the checks made on every response.
//!
//! A torture file `fNNNN.prom` holds one family, `torture_sample`, with `n` samples; every
//! file shares that family name (told apart by the `fid` label), as jobs sharing a client
//! library's metric names do, so the exporter merges one family block from all the files and
//! a change rebuilds that file's part of a block many files feed:
//!
//! ```text
//! torture_sample{fid="17",gen="123",n="12",i="0"} 123
//! ...
//! torture_sample{fid="17",gen="123",n="12",i="11"} 123
//! ```
//!
//! Every sample carries the file's id, its generation (also the value) and its sample count,
//! and `n` changes between generations. So a response that mixes two versions of a file
//! (two `gen`), or holds a part of one (fewer than `n` samples, or a missing `i`), is caught
//! sample by sample. With `--source-label src` on the exporter, every sample must also say
//! it came from its own file.

use promdrop_textformat::{Format, parse};

use crate::Errors;

/// The family every torture file holds.
pub const FAMILY: &str = "torture_sample";
/// The label the exporter is asked to add (`--source-label`).
pub const SOURCE_LABEL: &str = "src";

/// The name of file `fid`.
pub fn file_name(fid: usize) -> String {
    format!("f{fid:04}.prom")
}

/// The text of version `generation` of file `fid`: `n` samples, each with a `pad` label of
/// `pad` characters when `pad > 0` (to make files of a given size).
pub fn file_text(fid: usize, generation: u64, n: usize, pad: usize) -> String {
    use std::fmt::Write as _;
    let padding = "p".repeat(pad);
    let mut text = String::with_capacity(120 + n * (64 + pad));
    text.push_str("# HELP torture_sample One sample of a promdrop torture file.\n");
    text.push_str("# TYPE torture_sample gauge\n");
    for i in 0..n {
        let _ = write!(
            text,
            "torture_sample{{fid=\"{fid}\",gen=\"{generation}\",n=\"{n}\",i=\"{i}\""
        );
        if pad > 0 {
            let _ = write!(text, ",pad=\"{padding}\"");
        }
        let _ = writeln!(text, "}} {generation}");
    }
    text
}

/// One complete version of a file, as read back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    /// The generation.
    pub generation: u64,
    /// The sample count.
    pub n: usize,
    /// An order-independent digest of the samples (labels but the source label, values).
    pub digest: u64,
}

#[derive(Debug, Default)]
struct Acc {
    generation: Option<u64>,
    n: Option<usize>,
    seen: Vec<bool>,
    count: usize,
    digest: u64,
    bad: bool,
}

fn fnv(hash: &mut u64, bytes: &[u8]) {
    for &b in bytes {
        *hash ^= u64::from(b);
        *hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    *hash ^= 0xff;
    *hash = hash.wrapping_mul(0x0100_0000_01b3);
}

/// What to check a body against.
#[derive(Debug, Clone)]
pub struct Spec {
    /// Files `0..files` exist.
    pub files: usize,
    /// Every file must be present (files are only ever replaced by a rename, never removed,
    /// so none may be absent from any response).
    pub require_all: bool,
    /// The exporter's `--source-label`, if any: every sample must carry its file's name.
    pub source_label: Option<&'static str>,
}

/// What a checked body held.
#[derive(Debug, Default)]
pub struct Seen {
    /// The version of each file present and complete (by file id).
    pub versions: Vec<Option<Version>>,
    /// Torture samples checked.
    pub samples: u64,
    /// Violations found in this body.
    pub violations: u64,
}

/// Parses `body` (classic text) and checks every torture file in it: one generation, one
/// sample count, all `n` samples, values equal to the generation, the right source label.
/// Each violation is added to `errors` with `context`.
pub fn check_body(body: &[u8], spec: &Spec, context: &str, errors: &Errors) -> Seen {
    let mut seen = Seen {
        versions: vec![None; spec.files],
        ..Seen::default()
    };
    let violation = |seen: &mut Seen, message: String| {
        seen.violations += 1;
        errors.add(format!("{context}: {message}"));
    };
    let exposition = match parse(body, Format::Classic) {
        Ok(e) => e,
        Err(e) => {
            violation(
                &mut seen,
                format!("the body ({} bytes) does not parse: {e}", body.len()),
            );
            return seen;
        }
    };
    let mut accs: Vec<Acc> = (0..spec.files).map(|_| Acc::default()).collect();
    for family in exposition.families.iter().filter(|f| f.name == FAMILY) {
        for sample in &family.samples {
            seen.samples += 1;
            let label = |name: &str| sample.label(name);
            let number = |name: &str| label(name).and_then(|v| v.parse::<u64>().ok());
            let (Some(fid), Some(generation), Some(n), Some(i)) =
                (number("fid"), number("gen"), number("n"), number("i"))
            else {
                violation(
                    &mut seen,
                    format!("a sample without fid/gen/n/i: {sample:?}"),
                );
                continue;
            };
            let (fid, n, i) = (fid as usize, n as usize, i as usize);
            if fid >= spec.files {
                violation(&mut seen, format!("a sample of unknown file id {fid}"));
                continue;
            }
            if let Some(src) = spec.source_label {
                let expected = file_name(fid);
                if label(src) != Some(expected.as_str()) {
                    violation(
                        &mut seen,
                        format!(
                            "a sample of {expected} says {src}={:?} (served from another file?)",
                            label(src)
                        ),
                    );
                }
            }
            let acc = &mut accs[fid];
            if acc.bad {
                continue;
            }
            match (acc.generation, acc.n) {
                (None, _) => {
                    acc.generation = Some(generation);
                    acc.n = Some(n);
                    acc.seen = vec![false; n];
                }
                (Some(g), Some(m)) if g != generation || m != n => {
                    acc.bad = true;
                    violation(
                        &mut seen,
                        format!(
                            "{} mixes versions: gen {g} (n={m}) and gen {generation} (n={n})",
                            file_name(fid)
                        ),
                    );
                    continue;
                }
                _ => {}
            }
            if sample.value.number != generation as f64 {
                acc.bad = true;
                violation(
                    &mut seen,
                    format!(
                        "{} gen {generation}: sample i={i} has value {}",
                        file_name(fid),
                        sample.value.number
                    ),
                );
                continue;
            }
            if i >= n || acc.seen[i] {
                acc.bad = true;
                violation(
                    &mut seen,
                    format!(
                        "{} gen {generation}: sample i={i} out of range or twice",
                        file_name(fid)
                    ),
                );
                continue;
            }
            acc.seen[i] = true;
            acc.count += 1;
            let mut h = 0xcbf2_9ce4_8422_2325u64;
            let mut labels: Vec<_> = sample
                .labels
                .iter()
                .filter(|l| Some(l.name.as_ref()) != spec.source_label)
                .collect();
            labels.sort();
            for l in labels {
                fnv(&mut h, l.name.as_bytes());
                fnv(&mut h, l.value.as_bytes());
            }
            fnv(&mut h, &sample.value.number.to_bits().to_le_bytes());
            acc.digest = acc.digest.wrapping_add(h);
        }
    }
    for (fid, acc) in accs.into_iter().enumerate() {
        match (acc.generation, acc.n) {
            (Some(generation), Some(n)) if !acc.bad => {
                if acc.count == n {
                    seen.versions[fid] = Some(Version {
                        generation,
                        n,
                        digest: acc.digest,
                    });
                } else {
                    violation(
                        &mut seen,
                        format!(
                            "{} gen {generation} is partial: {} of {n} samples",
                            file_name(fid),
                            acc.count
                        ),
                    );
                }
            }
            (None, _) if spec.require_all => {
                violation(&mut seen, format!("{} is absent", file_name(fid)));
            }
            _ => {}
        }
    }
    seen
}

/// Reads file `fid` of `dir` fresh from disk and returns its version; an error when it is
/// absent, does not parse, or is not one complete version.
pub fn read_version(dir: &std::path::Path, fid: usize) -> Result<Version, String> {
    let path = dir.join(file_name(fid));
    let bytes = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    version_of(&bytes, fid).map_err(|e| format!("{}: {e}", path.display()))
}

/// The version `bytes` (one file's text) hold.
pub fn version_of(bytes: &[u8], fid: usize) -> Result<Version, String> {
    let errors = Errors::default();
    let spec = Spec {
        files: fid + 1,
        require_all: false,
        source_label: None,
    };
    let seen = check_body(bytes, &spec, "on disk", &errors);
    if errors.count() > 0 {
        return Err(errors.kept().join("; "));
    }
    seen.versions[fid].ok_or_else(|| "no torture samples".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_mixed_and_partial_versions() {
        let spec = Spec {
            files: 2,
            require_all: true,
            source_label: None,
        };
        let a = file_text(0, 5, 3, 0);
        let b = file_text(1, 7, 2, 4);
        let errors = Errors::default();
        let seen = check_body(
            format!("{a}{}", &b[b.find("torture_sample{").unwrap()..]).as_bytes(),
            &spec,
            "t",
            &errors,
        );
        assert_eq!(errors.count(), 0, "{:?}", errors.kept());
        assert_eq!(seen.versions[0].unwrap().generation, 5);
        assert_eq!(seen.versions[1].unwrap().n, 2);
        assert_eq!(seen.versions[0], Some(version_of(a.as_bytes(), 0).unwrap()));

        // A mix of two generations, a partial file, an absent one.
        let a6 = file_text(0, 6, 3, 0);
        let mixed: String = a
            .lines()
            .take(3)
            .chain(a6.lines().skip(3))
            .map(|l| format!("{l}\n"))
            .collect();
        let errors = Errors::default();
        check_body(mixed.as_bytes(), &spec, "t", &errors);
        assert_eq!(errors.count(), 2, "{:?}", errors.kept());
        assert!(errors.kept()[0].contains("mixes"));
        assert!(errors.kept()[1].contains("absent"));
        let partial: String = a.lines().take(4).map(|l| format!("{l}\n")).collect();
        assert!(
            version_of(partial.as_bytes(), 0)
                .unwrap_err()
                .contains("partial")
        );
    }
}
