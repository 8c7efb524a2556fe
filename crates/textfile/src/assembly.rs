//! Merging prepared files chunk by chunk, so that a change costs its chunk and not the
//! directory.
//!
//! The served files, in serving order, are cut into *chunks* of consecutive files (the caller
//! decides where; the exporter cuts where a hash of the file's key says so, so that adding or
//! removing a file moves no other boundary). A [`ChunkPlan`] groups one chunk's prepared
//! families by name and type and keeps, per group, the group's sample lines as references
//! into the files' prepared text (ranges, decompressed where they are written): the classic
//! main block, the split-off gauges, and the OpenMetrics lines. A change to a file rebuilds
//! only its chunk's plan.
//!
//! [`assemble`] then merges the plans of all chunks as `promdrop_textformat::merge` would merge
//! the files (first TYPE wins, first HELP and unit win, a family of another type is dropped
//! and reported) and lists the body as [`Piece`]s: family headers, rendered now (a few bytes
//! per family), and references to the groups' lines. Its cost is the number of (chunk, family)
//! groups and the names they hold, not the number of samples. The rules that leave out a part
//! of a group rather than a whole one (names that clash once rendered, other bucket bounds or
//! quantiles in one scope) are checked per group first, from the names and bounds each group
//! gathered when its chunk was planned; when one may apply, [`assemble`] declines and the
//! caller merges the files part by part ([`crate::prepared::render_classic`], the same
//! prepared lines, no parse). It gives exactly the bytes of
//! [`crate::prepared::render_classic`] and [`crate::prepared::render_openmetrics`] (and so of
//! the full merge, when no series is in two places: see [`crate::prepared::SeriesIndex`]); the
//! exporter's oracle test checks it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use bytes::Bytes;
use promdrop_textformat::{MetricType, NameTable, NameUse};

use crate::conflict::ConflictRecord;
use crate::prepared::{
    FamilyShape, Prepared, PreparedFamily, split_suffixes, write_openmetrics_header,
};

/// The lines slots of a group: the classic main block, the two split-off classic gauges, the
/// OpenMetrics lines.
pub const SLOTS: usize = 4;

/// The slot of the OpenMetrics lines.
pub const OM_SLOT: usize = 3;

/// One chunk's families of one name and type, in file order.
#[derive(Debug)]
pub struct Group {
    /// The family name.
    pub name: Box<str>,
    /// The type.
    pub metric_type: MetricType,
    /// The parts: (file index in the chunk, family index in the file).
    parts: Vec<(u32, u32)>,
    /// The first HELP of the parts.
    help: Option<Box<str>>,
    /// Whether every part with a HELP has `help`.
    help_uniform: bool,
    /// The first unit of the parts.
    unit: Option<Box<str>>,
    /// The classic main block name of the first part that has main lines.
    main_name: Option<Box<str>>,
    /// Whether any part has lines in each slot ([`SLOTS`]).
    has_lines: [bool; SLOTS],
    /// The OpenMetrics name of the first part.
    om_name: Box<str>,
    /// Whether every part has `om_name`.
    om_same_name: bool,
    /// Whether a part is a counter written as `unknown`.
    om_unknown: bool,
    /// Whether a part has `_created` samples of its own.
    om_has_created: bool,
    /// Where each part's lines are in its group's lines of each slot
    /// ([`ChunkPlan::lines`]; `u32::MAX` when the part has none there), in `parts` order.
    line_index: Vec<[u32; SLOTS]>,
    /// Every name a part holds in either format, each once (taken when a part takes it).
    names: Vec<(Box<str>, NameUse)>,
    /// Per scope ([`Prepared::scope`]): the first bucket bounds or quantiles of a part, and
    /// whether every part of that scope with some has the same.
    bounds: Vec<ScopeBounds>,
}

/// A group's bucket bounds or quantiles in one scope: see [`Group::bounds`].
#[derive(Debug, PartialEq)]
struct ScopeBounds {
    scope: Box<str>,
    first: Box<[Box<str>]>,
    uniform: bool,
}

impl Group {
    /// Adds the lines of `family` (of the chunk's file number `file`), the part just added to
    /// this group, to `lines` (the group's).
    fn add_lines(&mut self, lines: &mut [Vec<LineRef>; SLOTS], file: u32, family: &PreparedFamily) {
        let mut index = [u32::MAX; SLOTS];
        for (k, range) in family.classic.iter().enumerate() {
            if range.is_empty() {
                continue;
            }
            if k == 0 && !self.has_lines[0] {
                self.main_name = Some(Box::from(family.main_name()));
            }
            self.has_lines[k] = true;
            index[k] = lines[k].len() as u32;
            lines[k].push(LineRef::classic(file, range));
        }
        if !family.om.is_empty() {
            self.has_lines[OM_SLOT] = true;
            index[OM_SLOT] = lines[OM_SLOT].len() as u32;
            lines[OM_SLOT].push(LineRef::openmetrics(file, family));
        }
        self.line_index.push(index);
    }

    /// Compares the bucket bounds or quantiles of `family` (of file `prepared`) with the
    /// first of its scope.
    fn add_bounds(&mut self, prepared: &Prepared, family: &PreparedFamily) {
        if family.bounds.is_empty() {
            return;
        }
        match self.bounds.iter_mut().find(|b| b.scope == prepared.scope) {
            Some(b) => b.uniform &= b.first == family.bounds,
            None => self.bounds.push(ScopeBounds {
                scope: prepared.scope.clone(),
                first: family.bounds.clone(),
                uniform: true,
            }),
        }
    }

    /// Whether `other` merges as this group does: equal in everything [`assemble`] and
    /// [`assemble_openmetrics`] read, but the lines themselves (only which slots have some).
    fn same_shape(&self, other: &Group) -> bool {
        self.name == other.name
            && self.metric_type == other.metric_type
            && self.parts == other.parts
            && self.help == other.help
            && self.help_uniform == other.help_uniform
            && self.unit == other.unit
            && self.main_name == other.main_name
            && self.has_lines == other.has_lines
            && self.om_name == other.om_name
            && self.om_same_name == other.om_same_name
            && self.om_unknown == other.om_unknown
            && self.om_has_created == other.om_has_created
            && self.names == other.names
            && self.bounds == other.bounds
    }
}

/// Where one part's lines of one slot are: the file (its index in the chunk), which of its
/// prepared texts, and the range there. Plain data: a chunk's lines are copied at each change
/// of one of its files, and references cost no reference count each (the slices they stand
/// for did: the largest part of a change's publication).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct LineRef {
    file: u32,
    /// The file's OpenMetrics text rather than its classic text.
    openmetrics: bool,
    start: u32,
    end: u32,
}

impl LineRef {
    fn classic(file: u32, range: &std::ops::Range<u32>) -> LineRef {
        LineRef {
            file,
            openmetrics: false,
            start: range.start,
            end: range.end,
        }
    }

    fn openmetrics(file: u32, family: &PreparedFamily) -> LineRef {
        LineRef {
            file,
            openmetrics: !family.om_in_classic,
            start: family.om.start,
            end: family.om.end,
        }
    }

    /// The lines in `files`, decompressed (empty when out of range).
    fn resolve(self, files: &[Arc<Prepared>]) -> Bytes {
        files
            .get(self.file as usize)
            .map(|f| f.lines(self.openmetrics, &(self.start..self.end)))
            .unwrap_or_default()
    }

    fn len(self) -> usize {
        self.end.saturating_sub(self.start) as usize
    }
}

/// A group's lines of one slot, in file order: references into the chunk's files' prepared
/// text ([`ChunkPlan::lines`]), resolved where they are written.
#[derive(Debug, Clone)]
pub struct GroupLines {
    files: Arc<[Arc<Prepared>]>,
    refs: Arc<[LineRef]>,
}

impl GroupLines {
    /// How many runs of lines (one a file).
    pub fn count(&self) -> usize {
        self.refs.len()
    }

    /// The length of the text, in bytes.
    pub fn byte_len(&self) -> usize {
        self.refs.iter().map(|r| r.len()).sum()
    }

    /// Run `i`, decompressed from its file's text.
    pub fn get(&self, i: usize) -> Option<Bytes> {
        Some(self.refs.get(i)?.resolve(&self.files))
    }

    /// The runs, in order, each decompressed from its file's text.
    pub fn iter(&self) -> impl Iterator<Item = Bytes> + '_ {
        self.refs.iter().map(|r| r.resolve(&self.files))
    }

    /// Whether `a` and `b` are the same list (not a copy).
    pub fn ptr_eq(a: &GroupLines, b: &GroupLines) -> bool {
        Arc::ptr_eq(&a.refs, &b.refs) && Arc::ptr_eq(&a.files, &b.files)
    }
}

/// A group's lines by slot, shared: the OpenMetrics lines are one list with the classic main
/// ones when they are the same (a client library's counters and gauges read the same in both
/// formats), so a rewritten file patches, and a plan holds, one list, not two.
fn share_om_lines(lines: [Vec<LineRef>; SLOTS]) -> [Arc<[LineRef]>; SLOTS] {
    let om_is_main = !lines[0].is_empty() && lines[0] == lines[OM_SLOT];
    let mut shared = lines.map(Arc::from);
    if om_is_main {
        shared[OM_SLOT] = Arc::clone(&shared[0]);
    }
    shared
}

/// One chunk of files, grouped for merging: see the [module docs](self).
#[derive(Debug)]
pub struct ChunkPlan {
    /// The files' paths as conflicts name them.
    paths: Arc<[String]>,
    /// The groups, in order of first appearance: shared by the plans of the chunk's later
    /// versions whose files kept their families' shapes ([`ChunkPlan::with_file_replaced`]).
    pub groups: Arc<[Group]>,
    /// The lines of each group, by slot, as references into the files' prepared text
    /// (shared with the segments made of them).
    lines: Vec<[Arc<[LineRef]>; SLOTS]>,
    /// Whether every file's text could be split by family (else the full merge).
    pub classic_ok: bool,
    /// Whether the OpenMetrics lines can be merged here: every file split by family and no
    /// `_created` gauge folded into its counter (else the caller takes the slower path).
    pub om_ok: bool,
    /// For conflicts: (file, family index in file) of each part by group, the files' help;
    /// and the text the lines are in.
    files: Arc<[Arc<Prepared>]>,
}

impl ChunkPlan {
    /// Groups the families of `files` (one chunk, in serving order), whose paths (as conflicts
    /// name them) are `paths`.
    pub fn build(files: Vec<Arc<Prepared>>, paths: Vec<String>) -> ChunkPlan {
        let mut groups: Vec<Group> = Vec::new();
        let mut lines: Vec<[Vec<LineRef>; SLOTS]> = Vec::new();
        let mut by_key: HashMap<(&str, MetricType), usize> = HashMap::new();
        // The group of each shape met so far. Files written by one library share their
        // families' shapes ([`FamilyShape::intern`]): a family of a shape already merged
        // into its group changes nothing of the group's shape-made fields (every rule below
        // gives the same for the same shape again), so only its lines are added.
        let mut by_shape: Vec<(*const FamilyShape, usize)> = Vec::new();
        let mut classic_ok = true;
        let mut om_ok = true;
        for (f, prepared) in files.iter().enumerate() {
            classic_ok &= prepared.ok;
            om_ok &= prepared.ok && prepared.om_ok;
            for (i, family) in prepared.families.iter().enumerate() {
                let shape = Arc::as_ptr(family.shape());
                if let Some(&(_, slot)) = by_shape.iter().find(|(s, _)| *s == shape) {
                    let g = &mut groups[slot];
                    g.parts.push((f as u32, i as u32));
                    g.add_lines(&mut lines[slot], f as u32, family);
                    g.add_bounds(prepared, family);
                    continue;
                }
                om_ok &= !family.om_folded && !family.om_folds;
                let slot = match by_key.entry((&family.name, family.metric_type)) {
                    Entry::Occupied(e) => *e.get(),
                    Entry::Vacant(e) => {
                        e.insert(groups.len());
                        groups.push(Group {
                            name: family.name.clone(),
                            metric_type: family.metric_type,
                            // Sized for a part per file: files of one library have every
                            // family, and a chunk is built at every change.
                            parts: Vec::with_capacity(files.len()),
                            help: None,
                            help_uniform: true,
                            unit: None,
                            main_name: None,
                            has_lines: [false; SLOTS],
                            om_name: Box::from(family.om_name()),
                            om_same_name: true,
                            om_unknown: false,
                            om_has_created: false,
                            line_index: Vec::with_capacity(files.len()),
                            names: Vec::new(),
                            bounds: Vec::new(),
                        });
                        lines.push([
                            Vec::with_capacity(files.len()),
                            Vec::new(),
                            Vec::new(),
                            Vec::with_capacity(files.len()),
                        ]);
                        groups.len() - 1
                    }
                };
                let g = &mut groups[slot];
                g.parts.push((f as u32, i as u32));
                match (&g.help, family.help.as_deref()) {
                    (None, Some(h)) => g.help = Some(Box::from(h)),
                    (Some(kept), Some(h)) if **kept != *h => g.help_uniform = false,
                    _ => {}
                }
                if g.unit.is_none() {
                    g.unit = family.unit.clone();
                }
                g.add_lines(&mut lines[slot], f as u32, family);
                for (name, how) in family.names.iter() {
                    match g.names.iter_mut().find(|(n, _)| n == name) {
                        Some((_, held)) => {
                            if *how == NameUse::Taken {
                                *held = NameUse::Taken;
                            }
                        }
                        None => g.names.push((name.clone(), *how)),
                    }
                }
                g.add_bounds(prepared, family);
                g.om_same_name &= family.om_name() == &*g.om_name;
                g.om_unknown |= family.om_unknown;
                g.om_has_created |= family.om_has_created;
                by_shape.push((shape, slot));
            }
        }
        ChunkPlan {
            paths: paths.into(),
            lines: lines.into_iter().map(share_om_lines).collect(),
            groups: groups.into(),
            classic_ok,
            om_ok,
            files: files.into(),
        }
    }

    /// The lines of slot `slot` of group `group`, in the files' prepared text.
    pub fn lines(&self, group: usize, slot: usize) -> GroupLines {
        GroupLines {
            files: Arc::clone(&self.files),
            refs: self
                .lines
                .get(group)
                .and_then(|l| l.get(slot))
                .map_or_else(|| Arc::from([]), Arc::clone),
        }
    }

    /// This plan with file `f`'s prepared form replaced by `new`, when `new` has the same
    /// families of the same shapes ([`FamilyShape::intern`]) in the same order, with lines in
    /// the same slots: a rewrite with new values, what a change almost always is. It shares
    /// this plan's groups (and so merges as this plan, [`ChunkPlan::same_shape`]) and differs
    /// only in `f`'s lines; it costs the chunk's lines, not its grouping. `None` when `new`
    /// differs in more than its lines (the caller then builds the plan).
    pub fn with_file_replaced(&self, f: usize, new: Arc<Prepared>) -> Option<ChunkPlan> {
        let old = self.files.get(f)?;
        let same_shapes = old.ok == new.ok
            && old.om_ok == new.om_ok
            && old.scope == new.scope
            && old.families.len() == new.families.len()
            && old.families.iter().zip(&new.families).all(|(a, b)| {
                Arc::ptr_eq(a.shape(), b.shape())
                    && a.om.is_empty() == b.om.is_empty()
                    && a.classic
                        .iter()
                        .zip(&b.classic)
                        .all(|(x, y)| x.is_empty() == y.is_empty())
            });
        if !same_shapes {
            return None;
        }
        let file = u32::try_from(f).ok()?;
        let mut lines = Vec::with_capacity(self.lines.len());
        for (group, old) in self.groups.iter().zip(&self.lines) {
            // The group's lines of each slot, copied on the first of `f`'s lines in it.
            let mut patched: [Option<Vec<LineRef>>; SLOTS] = Default::default();
            for (&(part_file, i), index) in group.parts.iter().zip(&group.line_index) {
                if part_file != file {
                    continue;
                }
                let family = new.families.get(i as usize)?;
                for (slot, &at) in index.iter().enumerate() {
                    if at == u32::MAX {
                        continue;
                    }
                    let line = if slot == OM_SLOT {
                        LineRef::openmetrics(file, family)
                    } else {
                        LineRef::classic(file, &family.classic[slot])
                    };
                    if old[slot].get(at as usize) == Some(&line) {
                        continue;
                    }
                    let copy = patched[slot].get_or_insert_with(|| old[slot].to_vec());
                    *copy.get_mut(at as usize)? = line;
                }
            }
            // The OpenMetrics lines stay one list with the classic main ones when they were
            // and still are the same (see `share_om_lines`).
            let om_is_main = Arc::ptr_eq(&old[0], &old[OM_SLOT])
                && match (&patched[0], &patched[OM_SLOT]) {
                    (None, None) => true,
                    (Some(main), Some(om)) => main == om,
                    _ => false,
                };
            let mut slots: [Arc<[LineRef]>; SLOTS] =
                std::array::from_fn(|slot| match patched[slot].take() {
                    Some(copy) => copy.into(),
                    None => Arc::clone(&old[slot]),
                });
            if om_is_main {
                slots[OM_SLOT] = Arc::clone(&slots[0]);
            }
            lines.push(slots);
        }
        let files: Arc<[Arc<Prepared>]> = self
            .files
            .iter()
            .enumerate()
            .map(|(i, p)| {
                if i == f {
                    Arc::clone(&new)
                } else {
                    Arc::clone(p)
                }
            })
            .collect();
        Some(ChunkPlan {
            paths: Arc::clone(&self.paths),
            groups: Arc::clone(&self.groups),
            lines,
            classic_ok: self.classic_ok,
            om_ok: self.om_ok,
            files,
        })
    }

    /// The number of files.
    pub fn len(&self) -> usize {
        self.files.len()
    }

    /// Whether it has no file.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// The files' prepared forms, in order.
    pub fn files(&self) -> &[Arc<Prepared>] {
        &self.files
    }

    /// The HELP of part `(file, family)`, if there is such a part.
    fn part_help(&self, (f, i): (u32, u32)) -> Option<Option<&str>> {
        let family = self.files.get(f as usize)?.families.get(i as usize)?;
        Some(family.help.as_deref())
    }

    /// Whether `other` (a chunk of the same place, its files rewritten) merges as this one:
    /// then [`assemble`] and [`assemble_openmetrics`] give the same pieces (the same groups
    /// at the same indices) and the same conflicts for both, so a caller that kept them
    /// need not merge again. What differs is only the lines the pieces refer to. Costs the
    /// chunk's groups, names and parts, not its lines.
    pub fn same_shape(&self, other: &ChunkPlan) -> bool {
        if Arc::ptr_eq(&self.groups, &other.groups) && Arc::ptr_eq(&self.paths, &other.paths) {
            // One is the other with files replaced by files of the same shapes.
            return self.classic_ok == other.classic_ok && self.om_ok == other.om_ok;
        }
        self.classic_ok == other.classic_ok
            && self.om_ok == other.om_ok
            && self.paths == other.paths
            && self.groups.len() == other.groups.len()
            && self
                .groups
                .iter()
                .zip(other.groups.iter())
                .all(|(a, b)| a.same_shape(b))
            // Help conflicts name each part whose help differs from the kept one.
            && self.groups.iter().all(|g| {
                g.parts
                    .iter()
                    .all(|&part| self.part_help(part) == other.part_help(part))
            })
    }
}

/// A piece of a merged body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// Text rendered for this body (a family header).
    Text(String),
    /// The lines of slot `slot` of group `group` of chunk `chunk`.
    Lines {
        /// The chunk's index in the slice given to [`assemble`].
        chunk: usize,
        /// The group's index in the chunk.
        group: usize,
        /// The slot ([`SLOTS`]).
        slot: usize,
    },
}

/// A family of the merged body: its groups of the kept type, in order.
struct Family<'p> {
    first: &'p Group,
    /// (chunk, file) of the first part: the file that fixed the type.
    first_file: (usize, u32),
    help: Option<&'p str>,
    unit: Option<&'p str>,
    groups: Vec<(usize, usize)>,
}

/// The merged body of the chunks: classic pieces now, OpenMetrics on request.
#[derive(Debug)]
pub struct Assembly {
    /// The classic body.
    pub classic: Vec<Piece>,
    /// The conflicts, in the order the full merge reports them.
    pub conflicts: Vec<ConflictRecord>,
}

fn group_families<'p>(chunks: &[&'p ChunkPlan]) -> Vec<Family<'p>> {
    let mut families: Vec<Family<'p>> = Vec::new();
    let mut by_name: HashMap<&'p str, usize> = HashMap::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for (g, group) in chunk.groups.iter().enumerate() {
            match by_name.entry(&group.name) {
                Entry::Vacant(e) => {
                    e.insert(families.len());
                    families.push(Family {
                        first: group,
                        first_file: (c, group.parts.first().map_or(0, |p| p.0)),
                        help: group.help.as_deref(),
                        unit: group.unit.as_deref(),
                        groups: vec![(c, g)],
                    });
                }
                Entry::Occupied(e) => {
                    let m = &mut families[*e.get()];
                    if m.first.metric_type != group.metric_type {
                        continue;
                    }
                    if m.help.is_none() {
                        m.help = group.help.as_deref();
                    }
                    if m.unit.is_none() {
                        m.unit = group.unit.as_deref();
                    }
                    m.groups.push((c, g));
                }
            }
        }
    }
    families
}

/// The conflicts of the merged chunks: type and help conflicts in file order, as the full
/// merge reports them. The reserved families left out of the files are the serving program's
/// to judge.
fn conflicts(chunks: &[&ChunkPlan], families: &[Family<'_>]) -> Vec<ConflictRecord> {
    let mut out = Vec::new();
    let by_name: HashMap<&str, &Family<'_>> =
        families.iter().map(|f| (&*f.first.name, f)).collect();
    // (chunk, file, family index in file) orders them as the full merge finds them.
    let mut found: Vec<((usize, u32, u32), ConflictRecord)> = Vec::new();
    for (c, chunk) in chunks.iter().enumerate() {
        for group in chunk.groups.iter() {
            let Some(family) = by_name.get(&*group.name) else {
                continue;
            };
            let kept_file =
                || chunks[family.first_file.0].paths[family.first_file.1 as usize].clone();
            if group.metric_type != family.first.metric_type {
                for &(f, i) in &group.parts {
                    found.push((
                        (c, f, i),
                        ConflictRecord {
                            kind: "type",
                            family: group.name.to_string(),
                            series: None,
                            kept_file: Some(kept_file()),
                            kept_family: None,
                            name: None,
                            other_file: chunk.paths[f as usize].clone(),
                        },
                    ));
                }
                continue;
            }
            let Some(kept) = family.help else { continue };
            if group.help_uniform && group.help.as_deref().is_none_or(|h| h == kept) {
                continue;
            }
            for &(f, i) in &group.parts {
                let part = &chunk.files[f as usize].families[i as usize];
                if part.help.as_deref().is_some_and(|h| h != kept) {
                    found.push((
                        (c, f, i),
                        ConflictRecord {
                            kind: "help",
                            family: group.name.to_string(),
                            series: None,
                            kept_file: Some(kept_file()),
                            kept_family: None,
                            name: None,
                            other_file: chunk.paths[f as usize].clone(),
                        },
                    ));
                }
            }
        }
    }
    found.sort_by_key(|(k, _)| *k);
    out.extend(found.into_iter().map(|(_, c)| c));
    out
}

/// Whether the merge of the chunks may leave out a part of a family for a rule that only a
/// look at each part can apply: a family whose names clash with another family's once
/// rendered (`type`), or a histogram or summary whose bucket bounds or quantiles differ from
/// the ones another part of its scope gives (`buckets`). Per (chunk, family) group: its
/// names, gathered when the chunk was planned, in one table, and its bounds per scope;
/// conservative (parts of one file, which may hold one name, count as a clash here), so when
/// it says `false` no such conflict can occur and the groups merge whole.
fn needs_parts(chunks: &[&ChunkPlan], families: &[Family<'_>]) -> bool {
    let count: usize = families.iter().map(|m| m.groups.len()).sum();
    let mut names = NameTable::with_capacity(count * 4);
    // Each group is its own source, so that any two families holding a name clash.
    let mut source = 0;
    for (index, m) in families.iter().enumerate() {
        let mut fixed: Vec<(&str, &[Box<str>])> = Vec::new();
        for &(c, g) in &m.groups {
            let group = &chunks[c].groups[g];
            let held = group.names.iter().map(|(n, how)| (&**n, *how));
            if names.clash(held, Some(index), source).is_some() {
                return true;
            }
            names.hold(
                group
                    .names
                    .iter()
                    .map(|(n, how)| (Cow::Borrowed(&**n), *how)),
                index,
                source,
            );
            source += 1;
            for b in &group.bounds {
                if !b.uniform {
                    return true;
                }
                match fixed.iter().find(|(scope, _)| **scope == *b.scope) {
                    Some((_, kept)) if **kept != *b.first => return true,
                    Some(_) => {}
                    None => fixed.push((&b.scope, &b.first)),
                }
            }
        }
    }
    false
}

/// Merges the chunks (in serving order; no series in two places) into classic pieces and the
/// conflicts. `None` when a chunk holds a file whose text could not be split (the full merge
/// decides then), or when a family's names clash with another's or a histogram's buckets
/// differ between parts ([`needs_parts`]: [`crate::prepared::render_classic`] merges the
/// files part by part then).
pub fn assemble(chunks: &[&ChunkPlan]) -> Option<Assembly> {
    if chunks.iter().any(|c| !c.classic_ok) {
        return None;
    }
    let families = group_families(chunks);
    if needs_parts(chunks, &families) {
        return None;
    }
    let conflicts = conflicts(chunks, &families);
    let mut classic = Vec::with_capacity(families.len() * 2 + chunks.len());
    for m in &families {
        let family = m.first;
        let suffixes = split_suffixes(family.metric_type);
        let main = m
            .groups
            .iter()
            .map(|&(c, g)| &chunks[c].groups[g])
            .find(|g| g.has_lines[0])
            .and_then(|g| g.main_name.as_deref());
        if main.is_some() || suffixes.is_empty() {
            let name = main.unwrap_or(&family.name);
            let mut header = String::new();
            promdrop_textformat::write_classic_header(
                name,
                m.help,
                family.metric_type.classic_name(),
                &mut header,
            );
            classic.push(Piece::Text(header));
            push_lines(chunks, &m.groups, 0, &mut classic);
        }
        for (i, suffix) in suffixes.iter().enumerate() {
            if !m
                .groups
                .iter()
                .any(|&(c, g)| chunks[c].groups[g].has_lines[i + 1])
            {
                continue;
            }
            let name = format!("{}{suffix}", family.name);
            let mut header = String::new();
            promdrop_textformat::write_classic_header(&name, m.help, "gauge", &mut header);
            classic.push(Piece::Text(header));
            push_lines(chunks, &m.groups, i + 1, &mut classic);
        }
    }
    Some(Assembly { classic, conflicts })
}

fn push_lines(chunks: &[&ChunkPlan], groups: &[(usize, usize)], slot: usize, out: &mut Vec<Piece>) {
    for &(chunk, group) in groups {
        if chunks[chunk].groups[group].has_lines[slot] {
            out.push(Piece::Lines { chunk, group, slot });
        }
    }
}

/// Merges the chunks as OpenMetrics pieces (without `# EOF`). `None` when the plans cannot
/// give the full merge's output (a file not split by family, a `_created` gauge folded into
/// its counter, a family whose files give it different OpenMetrics names): the caller takes
/// [`crate::prepared::render_openmetrics`] or the full merge then.
pub fn assemble_openmetrics(chunks: &[&ChunkPlan]) -> Option<Vec<Piece>> {
    if chunks.iter().any(|c| !c.om_ok || !c.classic_ok) {
        return None;
    }
    let families = group_families(chunks);
    if needs_parts(chunks, &families) {
        return None;
    }
    let group = |&(c, g): &(usize, usize)| &chunks[c].groups[g];
    for m in &families {
        let om_name = &m.first.om_name;
        if m.groups
            .iter()
            .map(group)
            .any(|g| !g.om_same_name || g.om_name != *om_name)
        {
            return None;
        }
    }
    let om_types: Vec<MetricType> = families
        .iter()
        .map(|m| {
            if m.first.metric_type == MetricType::Counter
                && m.groups.iter().map(group).any(|g| g.om_unknown)
            {
                MetricType::Unknown
            } else {
                m.first.metric_type
            }
        })
        .collect();
    let mut owners: HashMap<&str, usize> = HashMap::new();
    for (i, m) in families.iter().enumerate() {
        if matches!(
            om_types[i],
            MetricType::Counter | MetricType::Histogram | MetricType::Summary
        ) && owners.insert(&m.first.om_name, i).is_some()
        {
            return None;
        }
    }
    for m in &families {
        let folds = matches!(m.first.metric_type, MetricType::Gauge | MetricType::Unknown)
            .then(|| m.first.name.strip_suffix("_created"))
            .flatten()
            .and_then(|base| owners.get(base).copied())
            .filter(|&owner| {
                !families[owner]
                    .groups
                    .iter()
                    .map(group)
                    .any(|g| g.om_has_created)
            });
        if folds.is_some() {
            // A fold across files: only the full merge renders it.
            return None;
        }
    }
    let mut out = Vec::with_capacity(families.len() * 2 + chunks.len());
    for (i, m) in families.iter().enumerate() {
        let mut header = String::new();
        write_openmetrics_header(&m.first.om_name, m.help, om_types[i], m.unit, &mut header);
        out.push(Piece::Text(header));
        push_lines(chunks, &m.groups, OM_SLOT, &mut out);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prepared::{Origin, PrepareOptions};

    fn prepared(path: &str, text: &str) -> Arc<Prepared> {
        let raw = Bytes::from(text.to_string());
        let families = promdrop_textformat::parse(&raw, promdrop_textformat::Format::Classic)
            .unwrap()
            .families;
        let origin = Origin::of(path.as_ref());
        Arc::new(Prepared::build(
            families,
            &raw,
            &origin,
            &PrepareOptions::default(),
        ))
    }

    fn job(name: &str, help: &str, value: u32, created: bool) -> String {
        let mut text = format!(
            "# HELP patch_rows_total {help}\n# TYPE patch_rows_total counter\n\
             patch_rows_total{{job=\"{name}\"}} {value}\n"
        );
        if created {
            text.push_str(&format!("patch_rows_created{{job=\"{name}\"}} 17\n"));
        }
        text.push_str(&format!(
            "# TYPE patch_depth gauge\npatch_depth{{job=\"{name}\"}} {value}\n"
        ));
        text
    }

    /// Every group's lines of every slot, as text.
    fn lines_of(plan: &ChunkPlan) -> Vec<Vec<String>> {
        (0..plan.groups.len())
            .map(|g| {
                (0..SLOTS)
                    .map(|slot| {
                        let bytes: Vec<u8> = plan
                            .lines(g, slot)
                            .iter()
                            .flat_map(|b| b.to_vec())
                            .collect();
                        String::from_utf8(bytes).unwrap()
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn a_file_rewritten_with_new_values_is_patched_into_the_plan_as_a_new_plan_would_have_it() {
        let paths = || {
            vec![
                "/d/a.prom".to_string(),
                "/d/b.prom".into(),
                "/d/c.prom".into(),
            ]
        };
        let files = [
            prepared("/d/a.prom", &job("a", "Rows.", 1, true)),
            prepared("/d/b.prom", &job("b", "Rows.", 2, true)),
            prepared("/d/c.prom", &job("c", "Rows.", 3, false)),
        ];
        let plan = ChunkPlan::build(files.to_vec(), paths());
        // b rewritten with other values: the same plan, b's lines replaced.
        let b2 = prepared("/d/b.prom", &job("b", "Rows.", 20, true));
        let patched = plan.with_file_replaced(1, Arc::clone(&b2)).unwrap();
        let mut now = files.to_vec();
        now[1] = b2;
        let built = ChunkPlan::build(now, paths());
        assert_eq!(lines_of(&patched), lines_of(&built));
        assert!(lines_of(&patched)[0][0].contains("patch_rows_total{job=\"b\"} 20\n"));
        assert!(Arc::ptr_eq(&patched.groups, &plan.groups));
        assert!(patched.same_shape(&plan) && built.same_shape(&patched));
        assert!(Arc::ptr_eq(&patched.files()[1], &built.files()[1]));
        // Twice in a row (as a chunk rewritten again): c, the last file.
        let c2 = prepared("/d/c.prom", &job("c", "Rows.", 30, false));
        let again = patched.with_file_replaced(2, c2).unwrap();
        assert!(lines_of(&again)[2][OM_SLOT].contains("patch_depth{job=\"c\"} 30\n"));
        assert!(lines_of(&again)[0][0].contains("patch_rows_total{job=\"b\"} 20\n"));
        // Another HELP, a `_created` gauge gained or lost, another family: not patched.
        for text in [
            job("b", "Rows read.", 2, true),
            job("b", "Rows.", 2, false),
            job("b", "Rows.", 2, true) + "# TYPE patch_extra gauge\npatch_extra 1\n",
        ] {
            let other = prepared("/d/b.prom", &text);
            assert!(plan.with_file_replaced(1, other).is_none(), "{text}");
        }
        // c has no `_created` gauge where a and b have one: gaining one is not a patch either.
        let c3 = prepared("/d/c.prom", &job("c", "Rows.", 3, true));
        assert!(plan.with_file_replaced(2, c3).is_none());
        // The gauge's OpenMetrics lines are its classic lines: one list, in a built plan as
        // in a patched one. The counter's, with `_created` samples folded in, are their own.
        let depth = plan.groups.iter().position(|g| &*g.name == "patch_depth");
        let depth = depth.unwrap();
        for p in [&plan, &patched, &again, &built] {
            assert!(GroupLines::ptr_eq(
                &p.lines(depth, 0),
                &p.lines(depth, OM_SLOT)
            ));
            assert!(!GroupLines::ptr_eq(&p.lines(0, 0), &p.lines(0, OM_SLOT)));
        }
    }
}
