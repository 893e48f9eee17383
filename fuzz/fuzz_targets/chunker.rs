//! Chunker reassembly: chunks concatenate to the input and respect the
//! size bounds, whatever the input and read pattern.
#![no_main]
use std::io::Read;

use cairn::chunker::Chunker;
use cairn::format::config::ChunkerParams;
use libfuzzer_sys::fuzz_target;

struct Trickle<'a>(&'a [u8], usize);
impl Read for Trickle<'_> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.0.len().min(out.len()).min(self.1);
        out[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&step, rest)) = data.split_first() else { return };
    let p = ChunkerParams { min_size: 64, avg_size: 256, max_size: 1024, seed: 42 };
    let c = Chunker::new(&p).expect("valid params");
    let chunks: Vec<Vec<u8>> = c.stream(Trickle(rest, step as usize + 1)).map(|r| r.expect("no io error")).collect();
    assert_eq!(chunks.concat(), rest);
    for (i, ch) in chunks.iter().enumerate() {
        assert!(ch.len() <= 1024);
        if i + 1 < chunks.len() {
            assert!(ch.len() >= 63);
        }
    }
});
