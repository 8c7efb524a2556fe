//! Text held compressed, in blocks that decompress on their own.
//!
//! A file's prepared text is read a family at a time: when its chunk's group is written to a
//! plain body or compressed for a gzip one, and when a conflict makes the publication merge
//! file by file. It is read whole only when the file is parsed again. So it is kept as LZ4
//! blocks, one for each range of lines ([`PackedText::pack_ranges`]): a range costs the
//! decompression of one block, at several GB/s. The text between the ranges (the families'
//! HELP and TYPE lines) is the same in every file a library writes with the same families,
//! so it is kept once for all of them (interned), not in each file's blocks: a directory of
//! client-library files is held at about a fifth of its size (most of an exporter's memory
//! was the files' text).
//!
//! ```
//! use promdrop_textfile::packed::PackedText;
//!
//! let text = b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n";
//! let packed = PackedText::pack_ranges(text, &[15..19, 34..38]);
//! assert_eq!(&packed.slice(34..38).unwrap()[..], b"b 2\n");
//! assert_eq!(&packed.to_bytes().unwrap()[..], &text[..]);
//! ```

use std::ops::Range;
use std::sync::{Arc, Mutex};

use bytes::Bytes;

use crate::intern::Interned;

/// Text in LZ4 blocks, one a range, with the text between the ranges shared: see the
/// [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct PackedText {
    /// The text's length.
    len: usize,
    /// The text before, between and after the blocks (one more than the blocks), shared
    /// with the texts that have the same; `None` when the blocks are the whole text.
    gaps: Option<Arc<Gaps>>,
    /// Each block's start in the text (ascending) and its end in `data` (it begins where the
    /// one before ends).
    blocks: Box<[(usize, usize)]>,
    /// The blocks, compressed one after the other.
    data: Box<[u8]>,
}

/// The text outside a packed text's blocks, in order: gap `i` comes before block `i`, and
/// the last after the last block.
#[derive(Debug, PartialEq, Eq, Hash)]
struct Gaps {
    text: Box<[u8]>,
    /// Where each gap ends in `text`.
    ends: Box<[usize]>,
}

impl Gaps {
    fn get(&self, i: usize) -> &[u8] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.text[start..self.ends[i]]
    }

    /// The one kept for `gaps`' text: every file of a library with the same families has
    /// the same HELP and TYPE lines, so they are kept once ([`Interned`]: forgotten as the
    /// table grows when no text holds them).
    fn intern(gaps: Gaps) -> Arc<Gaps> {
        use std::hash::BuildHasher;
        static TABLE: Mutex<Interned<Gaps>> = Mutex::new(Interned::new());
        static KEY: std::sync::OnceLock<foldhash::fast::RandomState> = std::sync::OnceLock::new();
        let key = KEY.get_or_init(Default::default).hash_one(&gaps);
        let mut table = Interned::lock(&TABLE);
        if let Some(same) = table.find(key, |kept| **kept == gaps) {
            return same;
        }
        table.insert(key, gaps)
    }
}

thread_local! {
    /// Each thread's buffer for the blocks being compressed (what is kept is allocated
    /// once, at its size: a kept allocation between freed temporaries of other sizes is
    /// what keeps an allocator's pages resident), and its LZ4 hash table (cleared for each
    /// block rather than allocated: a file is about ten blocks).
    static SCRATCH: std::cell::RefCell<(Vec<u8>, lz4_flex::block::CompressTable)> =
        std::cell::RefCell::new((Vec::new(), lz4_flex::block::CompressTable::default()));
}

/// The largest capacity a thread keeps in its scratch buffer between texts.
const KEPT_SCRATCH: usize = 1 << 20;

impl PackedText {
    /// `text` in one block.
    pub fn pack(text: &[u8]) -> PackedText {
        PackedText::pack_ranges(text, std::slice::from_ref(&(0..text.len())))
    }

    /// `text` with each of `ranges` in a block of its own and the text outside them shared
    /// (interned: one copy for every text that has the same). The ranges are taken in
    /// ascending order; an empty one, or one that overlaps the one before or passes the end,
    /// is passed over. A range read later decompresses the blocks it overlaps, so each range
    /// read as given is one block.
    pub fn pack_ranges(text: &[u8], ranges: &[Range<usize>]) -> PackedText {
        if text.is_empty() {
            return PackedText::default();
        }
        let mut kept: Vec<Range<usize>> = Vec::with_capacity(ranges.len());
        for range in ranges {
            let after_last = kept.last().is_none_or(|last| range.start >= last.end);
            if !range.is_empty() && range.end <= text.len() && after_last {
                kept.push(range.clone());
            }
        }
        let mut gap_text = Vec::new();
        let mut gap_ends = Vec::with_capacity(kept.len() + 1);
        let mut at = 0;
        for range in kept
            .iter()
            .map(|r| r.start..r.end)
            .chain(std::iter::once(text.len()..text.len()))
        {
            gap_text.extend_from_slice(&text[at..range.start]);
            gap_ends.push(gap_text.len());
            at = range.end;
        }
        let gaps = (!gap_text.is_empty()).then(|| {
            Gaps::intern(Gaps {
                text: gap_text.into_boxed_slice(),
                ends: gap_ends.into_boxed_slice(),
            })
        });
        SCRATCH.with_borrow_mut(|(data, table)| {
            // `data` keeps its length between texts (the bytes past `used` are left over,
            // never read): zeroing it again for each block cost more than compressing.
            let mut used = 0;
            let mut blocks = Vec::with_capacity(kept.len());
            for range in &kept {
                let block = &text[range.clone()];
                let end = used + lz4_flex::block::get_maximum_output_size(block.len());
                if data.len() < end {
                    data.resize(end, 0);
                }
                // The output is sized as the compressor requires: it cannot fail; were it
                // to, the block would read back as missing rather than wrong.
                let written =
                    lz4_flex::block::compress_into_with_table(block, &mut data[used..end], table)
                        .unwrap_or(0);
                used += written;
                blocks.push((range.start, used));
            }
            let packed = PackedText {
                len: text.len(),
                gaps,
                blocks: blocks.into_boxed_slice(),
                data: Box::from(&data[..used]),
            };
            if data.len() > KEPT_SCRATCH {
                *data = Vec::new();
                *table = lz4_flex::block::CompressTable::default();
            }
            packed
        })
    }

    /// The text's length.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the text is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes this text holds alone: its compressed blocks and where they are (the
    /// shared gaps are not counted).
    pub fn heap_bytes(&self) -> usize {
        self.data.len() + self.blocks.len() * std::mem::size_of::<(usize, usize)>()
    }

    /// The text of `range`, decompressed from the block it is in (or put together from the
    /// blocks and gaps it spans); `None` when the range is out of the text (or a block does
    /// not decompress, which a block made here always does).
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        if range.is_empty() {
            return Some(Bytes::new());
        }
        let i = self.blocks.partition_point(|&(s, _)| s <= range.start);
        if let Some(block) = i.checked_sub(1) {
            let (start, _) = self.blocks[block];
            if range.end <= self.block_end(block) {
                let text = self.decompress(block)?;
                return Some(text.slice(range.start - start..range.end - start));
            }
        }
        let mut whole = Vec::with_capacity(self.len);
        for block in 0..=self.blocks.len() {
            whole.extend_from_slice(self.gap(block));
            if block < self.blocks.len() {
                whole.extend_from_slice(&self.decompress(block)?);
            }
        }
        (whole.len() == self.len).then(|| Bytes::from(whole).slice(range))
    }

    /// The whole text, decompressed.
    pub fn to_bytes(&self) -> Option<Bytes> {
        self.slice(0..self.len)
    }

    /// Gap `i` (before block `i`; the last after the last block).
    fn gap(&self, i: usize) -> &[u8] {
        self.gaps.as_ref().map_or(&[], |g| g.get(i))
    }

    /// Where block `i` ends in the text: where the gap after it begins.
    fn block_end(&self, i: usize) -> usize {
        let next = self.blocks.get(i + 1).map_or(self.len, |&(start, _)| start);
        next - self.gap(i + 1).len()
    }

    /// Block `i`, decompressed.
    fn decompress(&self, i: usize) -> Option<Bytes> {
        let (start, end) = self.blocks[i];
        let from = if i == 0 { 0 } else { self.blocks[i - 1].1 };
        let mut text = vec![0; self.block_end(i) - start];
        let written = lz4_flex::block::decompress_into(&self.data[from..end], &mut text).ok()?;
        (written == text.len()).then(|| Bytes::from(text))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_range_reads_back_as_the_text_had_it() {
        let text: Vec<u8> = (0..2000)
            .map(|i| b"abc\n"[i % 4] ^ (i / 97) as u8)
            .collect();
        let ranges = [
            0..0,
            100..300,
            250..400,
            300..700,
            1500..1999,
            1999..2000,
            1990..5000,
        ];
        let packed = PackedText::pack_ranges(&text, &ranges);
        let starts: Vec<usize> = packed.blocks.iter().map(|b| b.0).collect();
        assert_eq!(starts, [100, 300, 1500, 1999]);
        assert_eq!(packed.len(), text.len());
        let reads = [
            (0, 0),
            (0, 1),
            (99, 101),
            (100, 300),
            (300, 700),
            (5, 1999),
            (0, 2000),
        ];
        for (start, end) in reads.into_iter().chain([(1999, 2000), (700, 1500)]) {
            assert_eq!(
                &packed.slice(start..end).unwrap()[..],
                &text[start..end],
                "{start}..{end}"
            );
        }
        assert_eq!(packed.slice(10..2001), None);
        assert_eq!(packed.slice(Range { start: 10, end: 9 }), None);
        assert_eq!(&packed.to_bytes().unwrap()[..], &text[..]);
        let whole = PackedText::pack(&text);
        assert!(whole.gaps.is_none());
        assert_eq!(&whole.slice(3..1003).unwrap()[..], &text[3..1003]);
    }

    #[test]
    fn the_text_between_ranges_is_kept_once_for_every_text_that_has_it() {
        let file = |job: &str| {
            let lines = |family: &str| {
                (0..10)
                    .map(|i| format!("{family}{{job=\"{job}\",shard=\"{i}\"}} {i}\n"))
                    .collect::<String>()
            };
            let a = format!(
                "# HELP a_total A.\n# TYPE a_total counter\n{}",
                lines("a_total")
            );
            let b = format!("# TYPE b gauge\n{}", lines("b"));
            let a_lines = a.find("a_total{").unwrap()..a.len();
            let b_lines = a.len() + b.find("b{").unwrap()..a.len() + b.len();
            (format!("{a}{b}"), [a_lines, b_lines])
        };
        let (one, one_ranges) = file("one");
        let (two, two_ranges) = file("two");
        let first = PackedText::pack_ranges(one.as_bytes(), &one_ranges);
        let second = PackedText::pack_ranges(two.as_bytes(), &two_ranges);
        let (Some(a), Some(b)) = (&first.gaps, &second.gaps) else {
            panic!("no gaps kept");
        };
        assert!(Arc::ptr_eq(a, b), "the same HELP and TYPE lines kept twice");
        assert_eq!(&second.to_bytes().unwrap()[..], two.as_bytes());
        // What a text holds alone is its lines, compressed to less than their size.
        let lines = two_ranges.iter().map(|r| r.len()).sum::<usize>();
        assert!(second.heap_bytes() < lines / 2, "{}", second.heap_bytes());
    }

    #[test]
    fn empty_text_has_no_block() {
        let packed = PackedText::pack(b"");
        assert!(packed.is_empty());
        assert_eq!(packed.to_bytes(), Some(Bytes::new()));
        assert_eq!(packed.slice(0..1), None);
    }
}
