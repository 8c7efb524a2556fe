//! A publication's gzip stream, kept in blocks from one publication to the next.
//!
//! At 10,000 files sharing family names a body is some 11,000 segments: a segment per chunk
//! and family, and a segment per chunk and per-file meta family. A publication after a change
//! differs from the one before in the changed chunks' segments only, but listing every
//! segment, and joining every segment's compressed bytes, costs a reference count per segment
//! in memory no other work touches: most of the first gzip request after a change (on the
//! 2-core test VM, 21 ms in its fast state and 160 ms in its slow one), and so of the time a
//! rename took to be seen. So the stream is kept in blocks of consecutive positions (about [`BLOCK_ITEMS`],
//! whole runs), each block its runs' compressed bytes joined. A position is known by where its
//! segment comes from (a chunk and a group, or a segment), read without touching the segment
//! (its key); a block whose positions all come from the same places as the last publication's
//! block at its index is that block, and only the others are listed and joined.

use std::ops::Range;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use promdrop_textfile::assembly::Piece;

use super::{DataChunk, HeaderCache, MetaChunk, Segment};
use crate::gzip::{self, Deflated, Totals};

/// How many positions a block holds before it ends at the next run's start: small, since a
/// changed chunk has a position in every family's block, and a change then lists and joins
/// its blocks only (at 10,000 files, about one position in ten per changed chunk).
pub const BLOCK_ITEMS: usize = 16;

/// Where a position's segment comes from, as an address and an index: equal keys are the
/// same segment while the address is not reused (a block keeps its positions' [`Source`]s).
type Key = (usize, u32);

/// How a position's segment joins a run (see [`split_runs`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RunOf {
    /// A family header: with the run before it.
    Header,
    /// A chunk's segment (by the chunk's address): with the chunk's segments around it.
    Chunk(usize),
    /// A run of its own.
    Alone,
}

/// Where a position's segment is: borrowed from the parts listed, so that listing the
/// positions costs no reference count.
enum At<'a> {
    /// This segment.
    Segment(&'a Arc<Segment>),
    /// This segment, made for this body (a header from the cache, the adopted lines).
    Made(Arc<Segment>),
    /// A data chunk's group's lines of one slot.
    Data {
        chunk: &'a Arc<DataChunk>,
        group: usize,
        slot: usize,
    },
    /// A meta chunk's lines of the per-file family `k` (none when the chunk has none).
    Meta { chunk: &'a Arc<MetaChunk>, k: usize },
}

/// One position of a body.
pub struct Item<'a> {
    key: Key,
    run: RunOf,
    at: At<'a>,
}

impl<'a> Item<'a> {
    /// The position of `segment`.
    pub fn segment(segment: &'a Arc<Segment>) -> Item<'a> {
        Item {
            key: (Arc::as_ptr(segment) as usize, 0),
            run: run_of(segment),
            at: At::Segment(segment),
        }
    }

    /// The position of `segment`, made for this body.
    pub fn made(segment: Arc<Segment>) -> Item<'a> {
        Item {
            key: (Arc::as_ptr(&segment) as usize, 0),
            run: run_of(&segment),
            at: At::Made(segment),
        }
    }

    /// The positions of a merge's `pieces` over `chunks` (what the part lists as segments).
    pub fn pieces(
        pieces: &[Piece],
        chunks: &'a [Arc<DataChunk>],
        headers: &HeaderCache,
        out: &mut Vec<Item<'a>>,
    ) {
        out.reserve(pieces.len());
        for piece in pieces {
            match *piece {
                Piece::Text(ref text) => out.push(Item::made(headers.get(text))),
                Piece::Lines { chunk, group, slot } => {
                    let Some(c) = chunks.get(chunk) else { continue };
                    let address = Arc::as_ptr(c) as usize;
                    out.push(Item {
                        key: (address, (group * super::SLOTS + slot + 1) as u32),
                        run: RunOf::Chunk(address),
                        at: At::Data {
                            chunk: c,
                            group,
                            slot,
                        },
                    });
                }
            }
        }
    }

    /// The position of `chunk`'s lines of the per-file family `k`.
    pub fn meta(chunk: &'a Arc<MetaChunk>, k: usize) -> Item<'a> {
        Item {
            key: (Arc::as_ptr(chunk) as usize, k as u32),
            // Each of a meta chunk's segments has a number of its own.
            run: RunOf::Alone,
            at: At::Meta { chunk, k },
        }
    }

    /// What the key's address points into, held weakly for a kept block.
    fn source(&self) -> Source {
        match &self.at {
            At::Segment(s) => Source::Segment(Arc::downgrade(s)),
            At::Made(s) => Source::Segment(Arc::downgrade(s)),
            At::Data { chunk, .. } => Source::Data(Arc::downgrade(chunk)),
            At::Meta { chunk, .. } => Source::Meta(Arc::downgrade(chunk)),
        }
    }

    /// The position's segment (none for a slot or meta family a chunk has no lines in).
    pub fn resolve(&self) -> Option<Arc<Segment>> {
        match &self.at {
            At::Segment(segment) => Some(Arc::clone(segment)),
            At::Made(segment) => Some(Arc::clone(segment)),
            At::Data { chunk, group, slot } => chunk.segments.get(*group)?.get(*slot)?.clone(),
            At::Meta { chunk, k } => {
                let lines = chunk.lines.get(*k)?;
                (!lines.is_empty()).then(|| Arc::clone(lines))
            }
        }
    }
}

/// Consecutive positions of a body, their segments compressed by runs and joined.
#[derive(Debug)]
pub struct Block {
    /// Its positions' keys: where each segment comes from, with the key's index.
    keys: Box<[(Source, u32)]>,
    /// The compressed runs of more than one segment, by their segments, for the block that
    /// replaces this one (a chunk's run is kept while the chunk is).
    runs: Vec<(Box<[Weak<Segment>]>, Deflated)>,
    /// The runs' compressed bytes, as one segment of the response.
    segment: Arc<Segment>,
    totals: Totals,
}

/// What a kept key's address points into, held weakly: the allocation stays, so the address
/// is not reused while the block is kept (an equal address is the same thing), and what is
/// there goes when nothing else holds it (a body kind no scraper asks for any more would
/// otherwise keep every chunk it was last made from).
#[derive(Debug)]
enum Source {
    Segment(Weak<Segment>),
    Data(Weak<DataChunk>),
    Meta(Weak<MetaChunk>),
}

impl Source {
    fn address(&self) -> usize {
        match self {
            Source::Segment(s) => s.as_ptr() as usize,
            Source::Data(c) => c.as_ptr() as usize,
            Source::Meta(c) => c.as_ptr() as usize,
        }
    }
}

/// The addresses of a kept run's segments.
fn addresses(members: &[Weak<Segment>]) -> impl Iterator<Item = usize> + '_ {
    members.iter().map(|m| m.as_ptr() as usize)
}

impl Block {
    /// Lists and compresses the `runs` of `items` (whole runs, consecutive), taking the runs
    /// of more than one segment that the last body compressed (`last`). Blocking.
    fn build(items: &[Item], runs: &[Range<usize>], last: &mut LastRuns<'_>) -> Block {
        let mut parts = Vec::new();
        let mut totals = Totals::default();
        let mut add = |deflated: &Deflated| {
            totals.add(&deflated.crc, deflated.len);
            if !deflated.bytes.is_empty() {
                parts.push(deflated.bytes.clone());
            }
        };
        let mut kept_runs = Vec::new();
        for run in runs {
            let members: Vec<Arc<Segment>> = items[run.clone()]
                .iter()
                .filter_map(Item::resolve)
                .collect();
            match members.as_slice() {
                [] => {}
                [one] => add(one.compress()),
                _ => {
                    let key: Vec<usize> = members.iter().map(|s| Arc::as_ptr(s) as usize).collect();
                    let deflated = match last.find(&key) {
                        Some(deflated) => deflated.clone(),
                        None => {
                            let parts: Vec<bytes::Bytes> =
                                members.iter().flat_map(|s| s.parts()).collect();
                            let parts: Vec<&[u8]> = parts.iter().map(|p| &p[..]).collect();
                            gzip::deflate_parts(&parts, false)
                        }
                    };
                    add(&deflated);
                    kept_runs.push((members.iter().map(Arc::downgrade).collect(), deflated));
                }
            }
        }
        Block {
            keys: items[block_range(runs)]
                .iter()
                .map(|i| (i.source(), i.key.1))
                .collect(),
            runs: kept_runs,
            segment: Arc::new(Segment::owned(parts, 0)),
            totals,
        }
    }
}

/// The last body's runs of more than one segment, found by their segments' addresses: first
/// in the block at the same index, then (when files came or went and the blocks moved) in
/// all of them, indexed once.
struct LastRuns<'a> {
    blocks: &'a [Arc<Block>],
    /// The block at the index being made.
    at: Option<&'a Block>,
    all: Option<std::collections::HashMap<Vec<usize>, &'a Deflated>>,
}

impl<'a> LastRuns<'a> {
    fn find(&mut self, key: &[usize]) -> Option<&'a Deflated> {
        let same = |members: &[Weak<Segment>]| addresses(members).eq(key.iter().copied());
        if let Some((_, deflated)) = self.at.and_then(|b| b.runs.iter().find(|(m, _)| same(m))) {
            return Some(deflated);
        }
        let blocks = self.blocks;
        let all = self.all.get_or_insert_with(|| {
            blocks
                .iter()
                .flat_map(|b| b.runs.iter().map(|(m, d)| (addresses(m).collect(), d)))
                .collect()
        });
        all.get(key).copied()
    }
}

/// How `segment` joins a run: by its chunk's number (a header's is 0).
fn run_of(segment: &Segment) -> RunOf {
    match segment.owner {
        0 => RunOf::Header,
        // Segments of one chunk share its number.
        owner => RunOf::Chunk(owner as usize),
    }
}

/// The runs of `items`, by index: a chunk's consecutive segments with the family headers
/// between or after them (the first run also takes the headers before it).
fn split_runs(items: &[Item]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut owner: Option<RunOf> = None;
    for (i, item) in items.iter().enumerate() {
        if starts_run(owner, item.run) {
            out.push(start..i);
            start = i;
        }
        if item.run != RunOf::Header {
            owner = Some(item.run);
        }
    }
    if start < items.len() {
        out.push(start..items.len());
    }
    out
}

/// Whether a segment that joins runs as `run` starts a new run after a run of `owner` (none:
/// only headers so far).
fn starts_run(owner: Option<RunOf>, run: RunOf) -> bool {
    match (owner, run) {
        (None, _) | (_, RunOf::Header) => false,
        (Some(_), RunOf::Alone) | (Some(RunOf::Alone), _) => true,
        (Some(a), b) => a != b,
    }
}

/// The blocks of a body whose runs are `runs` ([`split_runs`]), as ranges of `runs`: whole
/// runs, a block ending before the first run that starts [`BLOCK_ITEMS`] positions or more
/// after the block's start.
fn group_into_blocks(runs: &[Range<usize>]) -> Vec<Range<usize>> {
    let mut out = Vec::new();
    let mut first = 0;
    for (j, run) in runs.iter().enumerate() {
        if run.start - runs[first].start >= BLOCK_ITEMS {
            out.push(first..j);
            first = j;
        }
    }
    if first < runs.len() {
        out.push(first..runs.len());
    }
    out
}

/// The positions `runs` (consecutive) cover.
fn block_range(runs: &[Range<usize>]) -> Range<usize> {
    match (runs.first(), runs.last()) {
        (Some(first), Some(last)) => first.start..last.end,
        _ => 0..0,
    }
}

/// A publication's gzip stream: the header, its blocks, then per response the process
/// metrics and the trailer ([`GzipBody::finish`]).
#[derive(Debug)]
pub struct GzipBody {
    blocks: Vec<Arc<Block>>,
    totals: Totals,
}

/// The blocks of the last gzip body made, per body kind, for the next publication.
pub type KeptBlocks = Mutex<Vec<Arc<Block>>>;

impl GzipBody {
    /// The gzip stream of `items`, taking the blocks `kept` holds (the last body's) where
    /// their positions are the same, and leaving this body's blocks there. Blocking.
    pub fn build(items: &[Item], kept: &KeptBlocks) -> GzipBody {
        let mut last = kept.lock().unwrap_or_else(PoisonError::into_inner);
        let mut blocks = Vec::new();
        let mut last_runs = LastRuns {
            blocks: &last,
            at: None,
            all: None,
        };
        let runs = split_runs(items);
        for block in group_into_blocks(&runs) {
            let runs = &runs[block];
            let slice = &items[block_range(runs)];
            let old = last_runs.blocks.get(blocks.len());
            let same = old.is_some_and(|b| {
                b.keys.len() == slice.len()
                    && b.keys
                        .iter()
                        .zip(slice)
                        .all(|((source, index), i)| (source.address(), *index) == i.key)
            });
            blocks.push(match old {
                Some(b) if same => Arc::clone(b),
                _ => {
                    last_runs.at = old.map(|b| &**b);
                    Arc::new(Block::build(items, runs, &mut last_runs))
                }
            });
        }
        let mut totals = Totals::default();
        for block in &blocks {
            totals.extend(&block.totals);
        }
        last.clone_from(&blocks);
        GzipBody { blocks, totals }
    }

    /// The segments of one response: the gzip header, the blocks, then `last` compressed (its
    /// final block ends the stream) and the trailer.
    pub fn finish(&self, last: &[u8]) -> Vec<Arc<Segment>> {
        let tail = gzip::deflate(last, true);
        let mut totals = self.totals.clone();
        totals.add(&tail.crc, tail.len);
        let mut out = Vec::with_capacity(self.blocks.len() + 2);
        out.push(Arc::new(Segment::owned(
            vec![bytes::Bytes::from_static(&gzip::HEADER)],
            0,
        )));
        out.extend(self.blocks.iter().map(|b| Arc::clone(&b.segment)));
        out.push(Arc::new(Segment::owned(
            vec![tail.bytes, bytes::Bytes::copy_from_slice(&totals.trailer())],
            0,
        )));
        out
    }

    /// The blocks, in order (tests compare them across publications).
    pub fn block_segments(&self) -> impl Iterator<Item = &Arc<Segment>> {
        self.blocks.iter().map(|b| &b.segment)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::gunzip;
    use super::super::{next_owner, segments_text};
    use super::*;
    use bytes::Bytes;

    /// The whole response of `body` ending with `# EOF`, as bytes.
    fn response(body: &GzipBody) -> Vec<u8> {
        let mut out = Vec::new();
        for segment in body.finish(b"# EOF\n") {
            for part in segment.parts() {
                out.extend_from_slice(&part);
            }
        }
        out
    }

    fn items(segments: &[Arc<Segment>]) -> Vec<Item<'_>> {
        segments.iter().map(Item::segment).collect()
    }

    /// The gzip stream of `segments` (taking `kept`'s blocks), checked to read as their text.
    fn built(segments: &[Arc<Segment>], kept: &KeptBlocks) -> GzipBody {
        let body = GzipBody::build(&items(segments), kept);
        assert_eq!(
            gunzip(&response(&body)),
            [segments_text(segments).as_bytes(), b"# EOF\n"].concat()
        );
        body
    }

    fn block_addresses(body: &GzipBody) -> Vec<usize> {
        body.block_segments()
            .map(|s| Arc::as_ptr(s) as usize)
            .collect()
    }

    #[test]
    fn a_body_is_made_again_only_in_the_blocks_of_the_chunks_that_changed() {
        // Forty chunks of one segment in each of two families (as files sharing family names
        // are listed), each chunk's segments of one number.
        let header = |t: &str| Arc::new(Segment::header(t.to_owned()));
        let chunk = |c: usize, generation: usize| {
            let owner = next_owner();
            ["x", "y"].map(|family| {
                let text: String = (0..20)
                    .map(|i| format!("{family}{{job=\"{c}\",shard=\"{i}\"}} {generation}\n"))
                    .collect();
                Arc::new(Segment::owned(vec![Bytes::from(text)], owner))
            })
        };
        let (hx, hy) = (header("# TYPE x gauge\n"), header("# TYPE y gauge\n"));
        let list = |chunks: &[[Arc<Segment>; 2]]| {
            let mut out = vec![Arc::clone(&hx)];
            out.extend(chunks.iter().map(|c| Arc::clone(&c[0])));
            out.push(Arc::clone(&hy));
            out.extend(chunks.iter().map(|c| Arc::clone(&c[1])));
            out
        };
        let mut chunks: Vec<[Arc<Segment>; 2]> = (0..40).map(|c| chunk(c, 1)).collect();
        let kept = KeptBlocks::default();
        let segments = list(&chunks);
        let first = built(&segments, &kept);
        let blocks = block_addresses(&first);
        assert!(blocks.len() >= 4, "{} blocks", blocks.len());

        // Nothing changed: every block is the last body's.
        let again = GzipBody::build(&items(&segments), &kept);
        assert_eq!(block_addresses(&again), blocks);

        // Chunk 5 rewritten: the blocks holding its two segments are made again, no other.
        chunks[5] = chunk(5, 2);
        let changed = built(&list(&chunks), &kept);
        let now = block_addresses(&changed);
        assert_eq!(now.len(), blocks.len());
        let made: Vec<usize> = (0..now.len()).filter(|&b| now[b] != blocks[b]).collect();
        assert_eq!(made.len(), 2, "blocks made again: {made:?}");

        // The blocks kept for the next body keep no segment alive (only its address taken).
        let watched = Arc::downgrade(&chunks[7][0]);
        drop((chunks, segments, first, again, changed));
        assert!(!kept.lock().unwrap().is_empty());
        assert!(watched.upgrade().is_none(), "a kept block holds a segment");
    }

    /// The pointers to each compressed run's bytes in `body`, in order.
    fn run_bytes(body: &GzipBody) -> Vec<*const u8> {
        body.block_segments()
            .flat_map(|s| match &s.text {
                super::super::SegmentText::Parts(parts) => {
                    parts.iter().map(|p| p.as_ptr()).collect::<Vec<_>>()
                }
                super::super::SegmentText::Lines(_) | super::super::SegmentText::Packed(_) => {
                    Vec::new()
                }
            })
            .collect()
    }

    #[test]
    fn a_file_coming_first_moves_the_blocks_but_no_chunks_run_is_compressed_again() {
        // Each chunk's families its own: a run of three positions a chunk.
        let chunk = |name: &str| {
            let owner = next_owner();
            let text: String = (0..40)
                .map(|i| format!("{name}{{shard=\"{i}\"}} {i}\n"))
                .collect();
            [
                Arc::new(Segment::owned(vec![Bytes::from(text.clone())], owner)),
                Arc::new(Segment::header(format!("# TYPE {name}_b gauge\n"))),
                Arc::new(Segment::owned(vec![Bytes::from(text)], owner)),
            ]
        };
        let chunks: Vec<[Arc<Segment>; 3]> = (0..12).map(|c| chunk(&format!("c{c}"))).collect();
        let list = |chunks: &[[Arc<Segment>; 3]]| -> Vec<Arc<Segment>> {
            chunks.iter().flat_map(|c| c.iter().cloned()).collect()
        };
        let kept = KeptBlocks::default();
        let first = built(&list(&chunks), &kept);
        let before = run_bytes(&first);
        assert_eq!(before.len(), 12);
        // A new chunk first: every position moves, every block is made again, and each old
        // chunk's run is the one compressed before.
        let moved: Vec<[Arc<Segment>; 3]> = std::iter::once(chunk("new"))
            .chain(chunks.iter().cloned())
            .collect();
        let second = built(&list(&moved), &kept);
        assert!(
            block_addresses(&second)
                .iter()
                .all(|a| !block_addresses(&first).contains(a))
        );
        assert_eq!(run_bytes(&second)[1..], before[..]);
    }

    #[test]
    fn a_chunks_run_is_compressed_once_while_the_chunk_is_kept() {
        // Each chunk's families its own: a chunk's segments and the headers between them
        // are one run, compressed together.
        let header = |t: &str| Arc::new(Segment::header(t.to_owned()));
        let chunk = |name: &str, generation: usize| {
            let owner = next_owner();
            let text: String = (0..40)
                .map(|i| format!("{name}{{shard=\"{i}\"}} {generation}\n"))
                .collect();
            (
                Arc::new(Segment::owned(vec![Bytes::from(text.clone())], owner)),
                header(&format!("# TYPE {name}_b gauge\n")),
                Arc::new(Segment::owned(vec![Bytes::from(text)], owner)),
            )
        };
        let list = |a: &(Arc<Segment>, Arc<Segment>, Arc<Segment>),
                    b: &(Arc<Segment>, Arc<Segment>, Arc<Segment>)| {
            [&a.0, &a.1, &a.2, &b.0, &b.1, &b.2]
                .map(Arc::clone)
                .to_vec()
        };
        assert_eq!(
            split_runs(&items(&list(&chunk("a", 1), &chunk("b", 1)))),
            vec![0..3, 3..6]
        );
        // A header before any chunk's segment starts the first run; one between two chunks
        // goes with the chunk before it.
        let (h, a, b) = (header("# TYPE h gauge\n"), chunk("a", 1), chunk("b", 1));
        assert_eq!(
            split_runs(&items(&[h, a.0, a.1, a.2, b.0])),
            vec![0..4, 4..5]
        );
        let a = chunk("a", 1);
        let kept = KeptBlocks::default();
        let first = built(&list(&a, &chunk("b", 1)), &kept);
        let runs = run_bytes;
        // One block (six positions); chunk b rewritten: the block is made again, a's run is
        // the one compressed before.
        let second = built(&list(&a, &chunk("b", 2)), &kept);
        assert_eq!(runs(&second).len(), 2);
        assert_eq!(runs(&second)[0], runs(&first)[0]);
        assert_ne!(runs(&second)[1], runs(&first)[1]);
    }
}
