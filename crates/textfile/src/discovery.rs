//! Listing a directory: which entries are served, the symlink policy, and file identity.
//!
//! Served are the regular files directly in the directory whose names end in `.prom` and do
//! not start with `.` (so the writer's `.<name>.prom.<random>.tmp` and `.<name>.prom.lock`,
//! Python's `<name>.prom.<pid>.<tid>` and the shell's `<name>.prom.$$` are all ignored).
//! A symlink is followed only when its target, fully resolved, lies inside the directory
//! (also fully resolved): a ConfigMap's `x.prom -> ..data/x.prom` is served, a link to
//! `/etc/shadow` is reported and not.
//!
//! With tenancy ([`list_tenants`]) the files live one level down, in `<dir>/<namespace>/`, and
//! each namespace's directory is listed as above, as a directory of its own.

use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::Error;

/// What makes a file "the same file, unchanged": device, inode, size and modification time.
/// A file whose identity has not changed since it was read is not read again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device number.
    pub dev: u64,
    /// Inode number.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, in nanoseconds since the Unix epoch.
    pub mtime_ns: i128,
}

impl FileIdentity {
    /// The identity of the file `metadata` describes.
    pub fn of(metadata: &Metadata) -> FileIdentity {
        FileIdentity {
            dev: metadata.dev(),
            ino: metadata.ino(),
            size: metadata.size(),
            mtime_ns: i128::from(metadata.mtime()) * 1_000_000_000
                + i128::from(metadata.mtime_nsec()),
        }
    }

    /// Whether both identities name the same inode (content may differ).
    pub fn same_inode(&self, other: &FileIdentity) -> bool {
        self.dev == other.dev && self.ino == other.ino
    }

    /// The modification time.
    pub fn mtime(&self) -> SystemTime {
        if self.mtime_ns >= 0 {
            UNIX_EPOCH + Duration::from_nanos(u64::try_from(self.mtime_ns).unwrap_or(u64::MAX))
        } else {
            UNIX_EPOCH
                .checked_sub(Duration::from_nanos(
                    u64::try_from(-self.mtime_ns).unwrap_or(u64::MAX),
                ))
                .unwrap_or(UNIX_EPOCH)
        }
    }

    /// The modification time in seconds since the Unix epoch.
    pub fn mtime_seconds(&self) -> f64 {
        self.mtime_ns as f64 / 1e9
    }
}

/// A served file found in a directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    /// The file's name in the directory.
    pub name: OsString,
    /// The directory (as configured) joined with the name: what the `file` label shows.
    pub path: PathBuf,
    /// The identity of the file the name resolves to.
    pub identity: FileIdentity,
}

/// An entry that looked like a served file but is refused (a symlink escaping the directory).
#[derive(Debug)]
pub struct Refused {
    /// The entry's path.
    pub path: PathBuf,
    /// Why it is refused.
    pub error: Error,
}

/// The result of listing one directory.
#[derive(Debug, Default)]
pub struct Listing {
    /// Served files, sorted by name.
    pub found: Vec<Found>,
    /// Entries named like served files that are refused.
    pub refused: Vec<Refused>,
}

/// Whether a directory entry's name is that of a served file: ends in `.prom`, is not hidden.
pub fn is_served_name(name: &std::ffi::OsStr) -> bool {
    let bytes = name.as_encoded_bytes();
    bytes.len() > ".prom".len() && bytes.ends_with(b".prom") && !bytes.starts_with(b".")
}

/// Whether `name` can be a Kubernetes namespace (an RFC 1123 label: at most 63 lowercase
/// letters, digits and `-`, starting and ending with a letter or digit): the names of the
/// tenant directories served with `--textfile.tenancy`.
///
/// ```
/// use promdrop_textfile::discovery::is_namespace_name;
/// assert!(is_namespace_name("team-a".as_ref()));
/// assert!(!is_namespace_name("Team_A".as_ref()));
/// assert!(!is_namespace_name("..data".as_ref()));
/// assert!(!is_namespace_name("-x".as_ref()));
/// ```
pub fn is_namespace_name(name: &std::ffi::OsStr) -> bool {
    let b = name.as_encoded_bytes();
    let edge = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(edge)
        && b.last().is_some_and(edge)
        && b.iter().all(|c| edge(c) || *c == b'-')
}

/// Lists `dir` in the tenancy layout (`--textfile.tenancy`): the served files of each
/// subdirectory named as a Kubernetes namespace ([`is_namespace_name`]), one level deep, each
/// listed by [`list`] (so a symlink is followed only within its own namespace's directory).
/// A found file's [`Found::name`] is `<namespace>/<file>`. Hidden entries are skipped; a
/// `*.prom` file directly in `dir`, a subdirectory with another name, a symlinked
/// subdirectory and a subdirectory that cannot be listed are refused (reported, not served).
pub fn list_tenants(dir: &Path) -> Result<Listing, Error> {
    let list_error = |source| Error::ListDir {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(list_error)?;
    let mut listing = Listing::default();
    let refuse = |listing: &mut Listing, path: PathBuf, reason: &'static str| {
        listing.refused.push(Refused {
            error: Error::Tenancy {
                path: path.clone(),
                reason,
            },
            path,
        })
    };
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        if name.as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let path = dir.join(&name);
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        if !file_type.is_dir() {
            if is_served_name(&name) {
                refuse(
                    &mut listing,
                    path,
                    "with --textfile.tenancy files live in <dir>/<namespace>/",
                );
            } else if file_type.is_symlink() && is_namespace_name(&name) {
                refuse(
                    &mut listing,
                    path,
                    "a namespace's directory must be a directory, not a symlink",
                );
            }
            continue;
        }
        if !is_namespace_name(&name) {
            refuse(
                &mut listing,
                path,
                "not a namespace name (lowercase letters, digits and -, at most 63)",
            );
            continue;
        }
        match list(&path) {
            Ok(tenant) => {
                for mut found in tenant.found {
                    let mut qualified = name.clone();
                    qualified.push("/");
                    qualified.push(&found.name);
                    found.name = qualified;
                    listing.found.push(found);
                }
                listing.refused.extend(tenant.refused);
            }
            Err(e) => listing.refused.push(Refused { path, error: e }),
        }
    }
    listing.found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

/// `bytes` (a path or a file name) as a label value that tells every name apart: valid UTF-8
/// as is, each byte of invalid UTF-8 as `\xNN`, and a backslash as `\\` (so that an escape
/// cannot be mistaken for a name that spells one). Two names that differ only in invalid bytes
/// get different labels, where a lossy conversion would give both the same `U+FFFD`.
///
/// ```
/// use std::ffi::OsStr;
/// use std::os::unix::ffi::OsStrExt;
/// use promdrop_textfile::discovery::label_value;
///
/// assert_eq!(label_value(OsStr::new("/d/job.prom")), "/d/job.prom");
/// assert_eq!(label_value(OsStr::from_bytes(b"/d/\xff.prom")), "/d/\\xff.prom");
/// assert_ne!(label_value(OsStr::from_bytes(b"\xfe")), label_value(OsStr::from_bytes(b"\xff")));
/// assert_eq!(label_value(OsStr::new("a\\b")), "a\\\\b");
/// ```
pub fn label_value(bytes: &std::ffi::OsStr) -> String {
    let bytes = bytes.as_encoded_bytes();
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c == '\\' {
                out.push_str("\\\\");
            } else {
                out.push(c);
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

/// The identity of the directory itself (to notice it being deleted and created again).
pub fn dir_identity(dir: &Path) -> Option<(u64, u64)> {
    std::fs::metadata(dir).ok().map(|m| (m.dev(), m.ino()))
}

/// What one entry of a directory is, for serving.
#[derive(Debug)]
pub enum Entry {
    /// A served file.
    Found(Found),
    /// Named like a served file but refused (a symlink escaping the directory).
    Refused(Refused),
    /// Nothing to serve under that name (absent, not a regular file, a dangling link).
    Absent,
}

/// Classifies the entry `name` of `dir`, given its type without following a symlink and a way
/// to read its metadata (from the directory listing, or a `stat` of one name).
/// `canonical_dir` caches the resolved directory (only needed when a symlink is met).
fn classify(
    dir: &Path,
    name: OsString,
    file_type: std::fs::FileType,
    metadata: impl FnOnce() -> std::io::Result<Metadata>,
    canonical_dir: &mut Option<PathBuf>,
) -> Result<Entry, Error> {
    let path = dir.join(&name);
    let metadata = if file_type.is_symlink() {
        let resolved_dir = match canonical_dir {
            Some(d) => d.clone(),
            None => {
                let d = std::fs::canonicalize(dir).map_err(|source| Error::ListDir {
                    dir: dir.to_path_buf(),
                    source,
                })?;
                *canonical_dir = Some(d.clone());
                d
            }
        };
        let Ok(target) = std::fs::canonicalize(&path) else {
            return Ok(Entry::Absent); // dangling link: nothing to serve
        };
        if !target.starts_with(&resolved_dir) || target == resolved_dir {
            return Ok(Entry::Refused(Refused {
                error: Error::SymlinkEscape {
                    path: path.clone(),
                    target,
                    dir: dir.to_path_buf(),
                },
                path,
            }));
        }
        match std::fs::metadata(&target) {
            Ok(m) => m,
            Err(_) => return Ok(Entry::Absent),
        }
    } else if file_type.is_file() {
        match metadata() {
            Ok(m) => m,
            Err(_) => return Ok(Entry::Absent),
        }
    } else {
        return Ok(Entry::Absent);
    };
    if !metadata.is_file() {
        return Ok(Entry::Absent);
    }
    Ok(Entry::Found(Found {
        identity: FileIdentity::of(&metadata),
        name,
        path,
    }))
}

/// Looks at one entry of `dir` by name, as [`list`] would classify it: what a change event
/// about that name needs, in time independent of the directory's size.
pub fn look_up(dir: &Path, name: &std::ffi::OsStr) -> Result<Entry, Error> {
    if !is_served_name(name) {
        return Ok(Entry::Absent);
    }
    let path = dir.join(name);
    let metadata = match std::fs::symlink_metadata(&path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Entry::Absent),
        Err(source) => {
            return Err(Error::ListDir {
                dir: dir.to_path_buf(),
                source,
            });
        }
    };
    let file_type = metadata.file_type();
    classify(
        dir,
        name.to_os_string(),
        file_type,
        || Ok(metadata),
        &mut None,
    )
}

/// Looks at one entry `<namespace>/<file>` of `dir` in the tenancy layout by name, as
/// [`list_tenants`] would classify it (the namespace's directory is the symlink boundary); the
/// entry found is named `<namespace>/<file>` as a listing names it. `None` when only a listing
/// can tell: the name has not that form, or the namespace's entry is not a plain directory
/// named as a namespace (missing, a symlink, a file).
pub fn look_up_tenant(dir: &Path, name: &std::ffi::OsStr) -> Option<Result<Entry, Error>> {
    let qualified = Path::new(name);
    let namespace = qualified.parent()?;
    let file = qualified.file_name()?;
    let mut components = namespace.components();
    let (Some(std::path::Component::Normal(ns)), None) = (components.next(), components.next())
    else {
        return None;
    };
    if !is_namespace_name(ns) {
        return None;
    }
    let tenant_dir = dir.join(ns);
    let is_dir = std::fs::symlink_metadata(&tenant_dir).is_ok_and(|m| m.file_type().is_dir());
    if !is_dir {
        return None;
    }
    Some(look_up(&tenant_dir, file).map(|entry| match entry {
        Entry::Found(mut found) => {
            found.name = name.to_os_string();
            Entry::Found(found)
        }
        other => other,
    }))
}

/// Lists `dir`: the served files and the refused entries. Entries that vanish while listing
/// are skipped (they were being renamed or deleted).
pub fn list(dir: &Path) -> Result<Listing, Error> {
    let list_error = |source| Error::ListDir {
        dir: dir.to_path_buf(),
        source,
    };
    let entries = std::fs::read_dir(dir).map_err(list_error)?;
    // Resolved lazily: only needed when a symlink is met.
    let mut canonical_dir: Option<PathBuf> = None;
    let mut listing = Listing::default();
    for entry in entries {
        let entry = entry.map_err(list_error)?;
        let name = entry.file_name();
        if !is_served_name(&name) {
            continue;
        }
        let Ok(file_type) = entry.file_type() else {
            continue;
        };
        match classify(
            dir,
            name,
            file_type,
            || entry.metadata(),
            &mut canonical_dir,
        )? {
            Entry::Found(found) => listing.found.push(found),
            Entry::Refused(refused) => listing.refused.push(refused),
            Entry::Absent => {}
        }
    }
    listing.found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(listing)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn only_visible_prom_regular_files_and_contained_symlinks_are_served() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("textfiles");
        std::fs::create_dir(&dir).unwrap();
        let outside = tmp.path().join("secret.prom");
        std::fs::write(&outside, "secret 1\n").unwrap();
        for name in [
            "a.prom",
            ".hidden.prom",
            "b.prom.123",
            ".a.prom.xyz.tmp",
            ".a.prom.lock",
            "notes.txt",
            ".prom",
        ] {
            std::fs::write(dir.join(name), "x 1\n").unwrap();
        }
        std::fs::create_dir(dir.join("sub.prom")).unwrap();
        // A ConfigMap-like layout: x.prom -> ..data/x.prom, ..data -> ..2024.
        std::fs::create_dir(dir.join("..2024")).unwrap();
        std::fs::write(dir.join("..2024/cm.prom"), "cm 1\n").unwrap();
        symlink("..2024", dir.join("..data")).unwrap();
        symlink("..data/cm.prom", dir.join("cm.prom")).unwrap();
        symlink(&outside, dir.join("escape.prom")).unwrap();
        symlink("/nonexistent/x", dir.join("dangling.prom")).unwrap();

        let listing = list(&dir).unwrap();
        let names: Vec<_> = listing
            .found
            .iter()
            .map(|f| f.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.prom", "cm.prom"]);
        assert_eq!(listing.found[1].path, dir.join("cm.prom"));
        assert_eq!(listing.refused.len(), 1);
        assert_eq!(listing.refused[0].path, dir.join("escape.prom"));
        assert!(
            listing.refused[0].error.to_string().contains("outside"),
            "{}",
            listing.refused[0].error
        );
    }

    #[test]
    fn tenancy_lists_one_level_of_namespace_directories() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("textfiles");
        for ns in ["team-a", "team-b", "Bad_Name", ".hidden"] {
            std::fs::create_dir_all(dir.join(ns)).unwrap();
            std::fs::write(dir.join(ns).join("job.prom"), "x 1\n").unwrap();
        }
        std::fs::create_dir_all(dir.join("team-a/deeper")).unwrap();
        std::fs::write(dir.join("team-a/deeper/nested.prom"), "x 1\n").unwrap();
        std::fs::write(dir.join("top.prom"), "x 1\n").unwrap();
        // A link from one namespace into another's directory is refused: containment is per
        // namespace.
        symlink("../team-a/job.prom", dir.join("team-b/steal.prom")).unwrap();
        symlink("team-a", dir.join("team-c")).unwrap();

        let listing = list_tenants(&dir).unwrap();
        let names: Vec<_> = listing
            .found
            .iter()
            .map(|f| f.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["team-a/job.prom", "team-b/job.prom"]);
        assert_eq!(listing.found[1].path, dir.join("team-b/job.prom"));
        let mut refused: Vec<_> = listing
            .refused
            .iter()
            .map(|r| r.path.strip_prefix(&dir).unwrap().display().to_string())
            .collect();
        refused.sort();
        assert_eq!(
            refused,
            ["Bad_Name", "team-b/steal.prom", "team-c", "top.prom"]
        );
    }

    #[test]
    fn a_tenants_file_is_looked_up_as_the_listing_sees_it() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("textfiles");
        for ns in ["team-a", "team-b"] {
            std::fs::create_dir_all(dir.join(ns)).unwrap();
        }
        std::fs::write(dir.join("team-a/job.prom"), "x 1\n").unwrap();
        symlink("../team-a/job.prom", dir.join("team-b/steal.prom")).unwrap();
        symlink("team-a", dir.join("team-c")).unwrap();
        std::fs::create_dir_all(dir.join("Bad_Name")).unwrap();
        std::fs::write(dir.join("Bad_Name/job.prom"), "x 1\n").unwrap();

        let look = |name: &str| look_up_tenant(&dir, name.as_ref()).map(|r| r.unwrap());
        let listing = list_tenants(&dir).unwrap();
        match look("team-a/job.prom") {
            Some(Entry::Found(found)) => {
                assert_eq!(found.name, "team-a/job.prom");
                assert_eq!(found.path, dir.join("team-a/job.prom"));
                assert_eq!(found.identity, listing.found[0].identity);
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(look("team-b/steal.prom"), Some(Entry::Refused(_))));
        assert!(matches!(look("team-a/gone.prom"), Some(Entry::Absent)));
        // Only a listing tells: a symlinked namespace, another name, no namespace, deeper.
        for name in [
            "team-c/job.prom",
            "Bad_Name/job.prom",
            "job.prom",
            "team-a/deeper/job.prom",
            "team-x/job.prom",
        ] {
            assert!(look(name).is_none(), "{name}");
        }
    }

    #[test]
    fn identity_changes_with_a_rename_over_the_file() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("a.prom"), "x 1\n").unwrap();
        let before = list(tmp.path()).unwrap().found[0].identity;
        assert_eq!(before, list(tmp.path()).unwrap().found[0].identity);
        std::fs::write(tmp.path().join(".tmp"), "x 2\n").unwrap();
        std::fs::rename(tmp.path().join(".tmp"), tmp.path().join("a.prom")).unwrap();
        let after = list(tmp.path()).unwrap().found[0].identity;
        assert!(!before.same_inode(&after));
        assert!(matches!(
            list(&tmp.path().join("missing")),
            Err(Error::ListDir { .. })
        ));
    }
}
