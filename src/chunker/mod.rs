//! Content-defined chunking: FastCDC (2020) with the repository's secret
//! parameters and gear seed. See format-spec/03-ids-and-sealing.md.
//!
//! The cut-point search is fastcdc's [`cut_gear`]; this module only feeds it
//! from a reader through a buffer that is refilled once per several chunks
//! rather than shifted after every chunk.

use std::io::{self, Read};

use fastcdc::v2020::{cut_gear, get_gear_with_seed, logarithm2, Normalization, MASKS};

use crate::error::Result;
use crate::format::config::ChunkerParams;

/// Normalization level used by every repository (format constant).
pub const NORMALIZATION: Normalization = Normalization::Level1;

/// Chunker parameters compiled into gear tables and masks.
pub struct Chunker {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Box<[u64; 256]>,
    gear_ls: Box<[u64; 256]>,
}

impl Chunker {
    pub fn new(p: &ChunkerParams) -> Result<Self> {
        p.validate()?;
        let bits = logarithm2(p.avg_size);
        let norm = NORMALIZATION.bits();
        let (gear, gear_ls) = get_gear_with_seed(p.seed);
        Ok(Self {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s: MASKS[(bits + norm) as usize],
            mask_l: MASKS[(bits - norm) as usize],
            gear,
            gear_ls,
        })
    }

    /// Length of the next chunk at the start of `data`. `data` must hold at
    /// least `max` bytes unless it is the end of the stream.
    pub fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n
    }

    /// Splits a stream into chunks, with a buffer of its own.
    pub fn stream<R: Read>(&self, reader: R) -> ChunkStream<'_, R> {
        self.stream_with(reader, ChunkBuffer::default())
    }

    /// Splits a stream into chunks reusing `buf`, so that many small files
    /// do not each allocate a buffer. Get it back with
    /// [`ChunkStream::into_parts`].
    pub fn stream_with<R: Read>(&self, reader: R, mut buf: ChunkBuffer) -> ChunkStream<'_, R> {
        let cap = (self.max * 2).max(1 << 20);
        if buf.0.len() < cap {
            buf.0.resize(cap, 0);
        }
        ChunkStream { chunker: self, reader, buf: buf.0, start: 0, end: 0, eof: false }
    }

    pub fn min_size(&self) -> usize {
        self.min
    }

    pub fn max_size(&self) -> usize {
        self.max
    }
}

/// A reusable read buffer for [`Chunker::stream_with`].
#[derive(Default)]
pub struct ChunkBuffer(Vec<u8>);

/// Iterator of chunks read from `R`.
pub struct ChunkStream<'a, R> {
    chunker: &'a Chunker,
    reader: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: Read> ChunkStream<'_, R> {
    /// Moves the unread tail to the front and reads until the buffer is full
    /// or the stream ends.
    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        while !self.eof && self.end < self.buf.len() {
            match self.reader.read(&mut self.buf[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(n) => self.end += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end of the stream.
    pub fn next_chunk(&mut self) -> io::Result<Option<Vec<u8>>> {
        if !self.eof && self.end - self.start < self.chunker.max {
            self.fill()?;
        }
        let avail = &self.buf[self.start..self.end];
        if avail.is_empty() {
            return Ok(None);
        }
        let n = self.chunker.cut(avail);
        let chunk = avail[..n].to_vec();
        self.start += n;
        Ok(Some(chunk))
    }

    /// The reader and the buffer, for reuse.
    pub fn into_parts(self) -> (R, ChunkBuffer) {
        (self.reader, ChunkBuffer(self.buf))
    }
}

impl<R: Read> Iterator for ChunkStream<'_, R> {
    type Item = io::Result<Vec<u8>>;
    fn next(&mut self) -> Option<Self::Item> {
        self.next_chunk().transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn params(seed: u64) -> ChunkerParams {
        ChunkerParams { min_size: 1024, avg_size: 4096, max_size: 16384, seed }
    }

    fn data(n: usize, salt: u32) -> Vec<u8> {
        (0..n as u32).map(|i| ((i ^ salt).wrapping_mul(2654435761) >> 11) as u8).collect()
    }

    /// Reads in odd-sized pieces, as pipes do.
    struct Trickle<'a>(&'a [u8], usize);
    impl Read for Trickle<'_> {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let n = self.0.len().min(out.len()).min(self.1);
            out[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn chunks_reassemble_and_respect_bounds(len in 0usize..200_000, salt in any::<u32>(), step in 1usize..70_000) {
            let c = Chunker::new(&params(7)).unwrap();
            let d = data(len, salt);
            let chunks: Vec<Vec<u8>> = c.stream(Trickle(&d, step)).map(|r| r.unwrap()).collect();
            prop_assert_eq!(chunks.concat(), d);
            for (i, ch) in chunks.iter().enumerate() {
                prop_assert!(ch.len() <= 16384);
                if i + 1 < chunks.len() { prop_assert!(ch.len() >= 1024); }
            }
        }
    }

    #[test]
    fn same_as_fastcdc_stream_and_seed_matters() {
        let d = data(300_000, 1);
        let c = Chunker::new(&params(7)).unwrap();
        let ours: Vec<usize> = c.stream(&d[..]).map(|r| r.unwrap().len()).collect();
        let theirs: Vec<usize> =
            fastcdc::v2020::StreamCDC::with_level_and_seed(&d[..], 1024, 4096, 16384, NORMALIZATION, 7)
                .map(|r| r.unwrap().length)
                .collect();
        assert_eq!(ours, theirs);
        let other: Vec<usize> = Chunker::new(&params(8)).unwrap().stream(&d[..]).map(|r| r.unwrap().len()).collect();
        assert_ne!(ours, other);
    }

    #[test]
    fn insertion_only_changes_nearby_chunks() {
        let c = Chunker::new(&params(3)).unwrap();
        let a = data(400_000, 9);
        let mut b = a.clone();
        b.splice(200_000..200_000, [1, 2, 3]);
        let ca: std::collections::HashSet<Vec<u8>> = c.stream(&a[..]).map(|r| r.unwrap()).collect();
        let cb: Vec<Vec<u8>> = c.stream(&b[..]).map(|r| r.unwrap()).collect();
        let shared = cb.iter().filter(|x| ca.contains(*x)).count();
        assert!(shared + 4 >= cb.len(), "{shared} of {}", cb.len());
    }
}
