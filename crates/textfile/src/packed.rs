//! Text held compressed, in blocks that decompress on their own.
//!
//! A file's prepared text is read a family at a time: when its chunk's group is written to a
//! plain body or compressed for a gzip one, and when a conflict makes the publication merge
//! file by file. It is read whole only when the file is parsed again. So it is kept as LZ4
//! blocks cut where its families' lines begin ([`PackedText::pack`]): a range of lines costs
//! the decompression of one block, at several GB/s, and a directory of client-library files
//! is held at about a third of its size (most of an exporter's memory was the files' text).
//!
//! ```
//! use promdrop_textfile::packed::PackedText;
//!
//! let text = b"# TYPE a gauge\na 1\n# TYPE b gauge\nb 2\n";
//! let packed = PackedText::pack(text, [15, 34]);
//! assert_eq!(&packed.slice(34..38).unwrap()[..], b"b 2\n");
//! assert_eq!(&packed.to_bytes().unwrap()[..], &text[..]);
//! ```

use std::ops::Range;

use bytes::Bytes;

/// Text in LZ4 blocks, each cut where a caller said ranges begin: see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct PackedText {
    /// The text's length.
    len: usize,
    /// Each block's start in the text (ascending; the first is 0) and its end in `data` (it
    /// begins where the one before ends).
    blocks: Box<[(usize, usize)]>,
    /// The blocks, compressed one after the other.
    data: Box<[u8]>,
}

thread_local! {
    /// Each thread's buffer for the blocks being compressed: what is kept is allocated
    /// once, at its size (a kept allocation between freed temporaries of other sizes is
    /// what keeps an allocator's pages resident).
    static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The largest capacity a thread keeps in its scratch buffer between texts.
const KEPT_SCRATCH: usize = 1 << 20;

impl PackedText {
    /// `text`, cut into blocks before each offset of `cuts` (ascending; an offset out of
    /// range or not above the one before is passed over). A range read later decompresses
    /// the blocks it overlaps, so cuts where ranges begin make each read one block.
    pub fn pack(text: &[u8], cuts: impl IntoIterator<Item = usize>) -> PackedText {
        if text.is_empty() {
            return PackedText::default();
        }
        let mut starts = vec![0];
        for cut in cuts {
            if cut < text.len() && starts.last().is_some_and(|&last| cut > last) {
                starts.push(cut);
            }
        }
        SCRATCH.with_borrow_mut(|data| {
            data.clear();
            let mut blocks = Vec::with_capacity(starts.len());
            for (i, &start) in starts.iter().enumerate() {
                let block = &text[start..starts.get(i + 1).copied().unwrap_or(text.len())];
                let at = data.len();
                data.resize(
                    at + lz4_flex::block::get_maximum_output_size(block.len()),
                    0,
                );
                // The output is sized as the compressor requires: it cannot fail; were it
                // to, the block would read back as empty rather than wrong.
                let written = lz4_flex::block::compress_into(block, &mut data[at..]).unwrap_or(0);
                data.truncate(at + written);
                blocks.push((start, data.len()));
            }
            let packed = PackedText {
                len: text.len(),
                blocks: blocks.into_boxed_slice(),
                data: Box::from(&data[..]),
            };
            if data.capacity() > KEPT_SCRATCH {
                *data = Vec::new();
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

    /// The bytes held: the compressed blocks and where they are.
    pub fn heap_bytes(&self) -> usize {
        self.data.len() + self.blocks.len() * std::mem::size_of::<(usize, usize)>()
    }

    /// The text of `range`, decompressed from the blocks it overlaps; `None` when the range
    /// is out of the text (or a block does not decompress, which a block made by
    /// [`PackedText::pack`] always does).
    pub fn slice(&self, range: Range<usize>) -> Option<Bytes> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        if range.is_empty() {
            return Some(Bytes::new());
        }
        let first = self.blocks.partition_point(|&(s, _)| s <= range.start) - 1;
        let last = self.blocks.partition_point(|&(s, _)| s < range.end) - 1;
        let from = self.blocks[first].0;
        let mut out = vec![0; self.block_end(last) - from];
        for block in first..=last {
            let text = &mut out[self.blocks[block].0 - from..self.block_end(block) - from];
            let compressed = &self.data[self.data_start(block)..self.blocks[block].1];
            let written = lz4_flex::block::decompress_into(compressed, text).ok()?;
            if written != text.len() {
                return None;
            }
        }
        Some(Bytes::from(out).slice(range.start - from..range.end - from))
    }

    /// The whole text, decompressed.
    pub fn to_bytes(&self) -> Option<Bytes> {
        self.slice(0..self.len)
    }

    /// Where block `i` ends in the text.
    fn block_end(&self, i: usize) -> usize {
        self.blocks.get(i + 1).map_or(self.len, |&(start, _)| start)
    }

    /// Where block `i` begins in `data`.
    fn data_start(&self, i: usize) -> usize {
        if i == 0 { 0 } else { self.blocks[i - 1].1 }
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
        let packed = PackedText::pack(&text, [0, 100, 100, 50, 700, 1999, 2000, 5000]);
        let starts: Vec<usize> = packed.blocks.iter().map(|b| b.0).collect();
        assert_eq!(starts, [0, 100, 700, 1999]);
        assert_eq!(packed.len(), text.len());
        for (start, end) in [
            (0, 0),
            (0, 1),
            (99, 101),
            (100, 700),
            (5, 1999),
            (0, 2000),
            (1999, 2000),
        ] {
            assert_eq!(
                &packed.slice(start..end).unwrap()[..],
                &text[start..end],
                "{start}..{end}"
            );
        }
        assert_eq!(packed.slice(10..2001), None);
        assert_eq!(packed.slice(Range { start: 10, end: 9 }), None);
        assert_eq!(&packed.to_bytes().unwrap()[..], &text[..]);
    }

    #[test]
    fn repeated_text_is_held_in_less_than_its_size() {
        let text =
            "batch_job_rows_processed_total{job=\"job_00003\",shard=\"0\"} 1000\n".repeat(100);
        let packed = PackedText::pack(text.as_bytes(), []);
        assert!(
            packed.heap_bytes() < text.len() / 4,
            "{}",
            packed.heap_bytes()
        );
    }

    #[test]
    fn empty_text_has_no_block() {
        let packed = PackedText::pack(b"", [0, 3]);
        assert!(packed.is_empty());
        assert_eq!(packed.to_bytes(), Some(Bytes::new()));
        assert_eq!(packed.slice(0..1), None);
    }
}
