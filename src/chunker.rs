//! Cutting a byte stream into blocks: FastCDC (content-defined, so an insertion moves only
//! the boundaries near it) or fixed-size. Streams with a bounded buffer (about two maximum
//! blocks), so memory stays flat whatever the file size. Never hashes or stores anything.

use crate::config::{ChunkMethod, Chunking};
use fastcdc::v2020::{cut, MASKS};
use std::io::{self, Read};

/// Normalization level 1, as FastCDC recommends: block sizes cluster around the average.
const NORMALIZATION: u32 = 1;

/// An iterator of blocks read from `R`.
pub struct Chunker<R> {
    source: R,
    params: Chunking,
    masks: (u64, u64),
    buf: Vec<u8>,
    start: usize,
    eof: bool,
}

impl<R: Read> Chunker<R> {
    /// Chunks `source` with `params`; `size_hint` (the file size, if known) sizes the buffer
    /// so that small files cost one allocation.
    pub fn new(source: R, params: &Chunking, size_hint: Option<u64>) -> Chunker<R> {
        let bits = params.avg.max(256).ilog2();
        let masks = (MASKS[(bits + NORMALIZATION) as usize], MASKS[(bits - NORMALIZATION) as usize]);
        let cap = size_hint.map_or(params.max_block(), |s| (s as usize).min(params.max_block())) + 1;
        Chunker { source, params: params.clone(), masks, buf: Vec::with_capacity(cap), start: 0, eof: false }
    }

    /// Reads until at least one maximum block is buffered past `start`, or end of stream.
    fn fill(&mut self) -> io::Result<()> {
        let want = self.params.max_block();
        if self.start > 0 && self.buf.len() - self.start < want {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        while !self.eof && self.buf.len() - self.start < want {
            let have = self.buf.len();
            let missing = want - (have - self.start);
            // Use the capacity sized from the hint first, so a small file is one allocation.
            let spare = self.buf.capacity() - have;
            let room = if spare > 0 { spare.min(missing) } else { missing.min(1 << 20) };
            self.buf.resize(have + room, 0);
            match self.source.read(&mut self.buf[have..]) {
                Ok(0) => {
                    self.buf.truncate(have);
                    self.eof = true;
                }
                Ok(n) => self.buf.truncate(have + n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => self.buf.truncate(have),
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    fn next_len(&self, data: &[u8]) -> usize {
        let p = &self.params;
        match p.method {
            ChunkMethod::Fixed => data.len().min(p.avg as usize),
            ChunkMethod::Cdc => {
                let (s, l) = self.masks;
                cut(data, p.min as usize, p.avg as usize, p.max as usize, s, l, s << 1, l << 1).1
            }
        }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<io::Result<Vec<u8>>> {
        if let Err(e) = self.fill() {
            return Some(Err(e));
        }
        let data = &self.buf[self.start..];
        if data.is_empty() {
            return None;
        }
        let n = self.next_len(data).clamp(1, data.len());
        // The whole buffer is one block (small file): hand it over without copying.
        if self.start == 0 && n == self.buf.len() && self.eof {
            return Some(Ok(std::mem::take(&mut self.buf)));
        }
        let block = data[..n].to_vec();
        self.start += n;
        Some(Ok(block))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random bytes (xorshift), for golden vectors.
    pub fn noise(len: usize, mut seed: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                (seed >> 24) as u8
            })
            .collect()
    }

    fn lens(data: &[u8], p: &Chunking) -> Vec<usize> {
        Chunker::new(data, p, None).map(|b| b.unwrap().len()).collect()
    }

    #[test]
    fn blocks_concatenate_to_input_and_respect_bounds() {
        let data = noise(3 << 20, 7);
        let p = Chunking::new(ChunkMethod::Cdc, 64 << 10).unwrap();
        let blocks: Vec<Vec<u8>> = Chunker::new(&data[..], &p, Some(data.len() as u64)).map(|b| b.unwrap()).collect();
        assert_eq!(blocks.concat(), data);
        for b in &blocks[..blocks.len() - 1] {
            assert!(b.len() >= p.min as usize && b.len() <= p.max as usize);
        }
    }

    #[test]
    fn golden_cdc_boundaries() {
        // Pinned: a change here changes block ids of every volume (see docs/FORMAT.md).
        let data = noise(1 << 20, 42);
        let p = Chunking::new(ChunkMethod::Cdc, 64 << 10).unwrap();
        let got = lens(&data, &p);
        assert_eq!(got.iter().sum::<usize>(), 1 << 20);
        assert_eq!(got, GOLDEN);
    }

    const GOLDEN: &[usize] = &[
        40186, 174507, 43098, 47806, 69210, 70077, 20351, 65828, 18356, 18515, 79741, 72494, 174193, 32974, 74593,
        46647,
    ];

    #[test]
    fn insertion_moves_few_boundaries() {
        let data = noise(4 << 20, 9);
        let mut edited = data.clone();
        edited.splice(1000..1000, b"inserted bytes".iter().copied());
        let p = Chunking::new(ChunkMethod::Cdc, 64 << 10).unwrap();
        let a: Vec<Vec<u8>> = Chunker::new(&data[..], &p, None).map(|b| b.unwrap()).collect();
        let b: Vec<Vec<u8>> = Chunker::new(&edited[..], &p, None).map(|b| b.unwrap()).collect();
        let shared = b.iter().filter(|x| a.contains(x)).count();
        assert!(shared + 3 >= a.len(), "only {shared} of {} blocks survived", a.len());
    }

    #[test]
    fn fixed_and_empty() {
        let p = Chunking::new(ChunkMethod::Fixed, 64 << 10).unwrap();
        assert_eq!(lens(&noise(150_000, 1), &p), vec![65536, 65536, 18928]);
        assert!(lens(&[], &p).is_empty());
    }
}
