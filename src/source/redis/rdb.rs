//! The reader [`super::open_rdb`] returns: it passes the RDB bytes through
//! and checks them on the way, so that a cut-short or damaged transfer ends
//! in an error, never in a clean EOF.
//!
//! Checks: the payload's framing (exactly the announced `$<len>` bytes, or
//! everything up to the `$EOF:<mark>` form's 40-byte mark, which is not
//! passed on), the RDB magic `REDIS` and 4-digit version at the start, and
//! the end: the EOF opcode `0xFF` and the CRC-64 (Jones, reflected; what
//! Redis writes) of everything before it, stored little-endian in the last
//! 8 bytes. A stored checksum of 0 means the server runs with `rdbchecksum
//! no`: then only the opcode is checked.

use std::io::{self, Read};
use std::time::Duration;

/// The length of the `$EOF:` form's mark.
pub const MARK_LEN: usize = 40;
const CHUNK: usize = 256 * 1024;

/// How the payload's end is known.
#[derive(Clone, Debug)]
pub enum Framing {
    /// Exactly this many bytes.
    Length(u64),
    /// Until these 40 bytes arrive (they are not part of the RDB).
    Mark([u8; MARK_LEN]),
}

/// CRC-64/Jones as Redis computes it (`crc64.c`): reflected polynomial
/// 0xad93d23594c935a9, initial value 0, no final xor. Eight bytes a step
/// ("slicing by 8").
pub fn crc64(mut crc: u64, data: &[u8]) -> u64 {
    let t = &CRC64_TABLES;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut b = [0u8; 8];
        b.copy_from_slice(w);
        let x = (crc ^ u64::from_le_bytes(b)).to_le_bytes();
        crc = t[7][x[0] as usize]
            ^ t[6][x[1] as usize]
            ^ t[5][x[2] as usize]
            ^ t[4][x[3] as usize]
            ^ t[3][x[4] as usize]
            ^ t[2][x[5] as usize]
            ^ t[1][x[6] as usize]
            ^ t[0][x[7] as usize];
    }
    crc64_bytewise(crc, words.remainder())
}

fn crc64_bytewise(mut crc: u64, data: &[u8]) -> u64 {
    for &b in data {
        crc = CRC64_TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
    }
    crc
}

static CRC64_TABLES: [[u64; 256]; 8] = crc64_tables();

const fn crc64_tables() -> [[u64; 256]; 8] {
    const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u64;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 == 1 { (c >> 1) ^ POLY_REFLECTED } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
}

/// Where `needle` (not empty) first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let last_start = hay.len().checked_sub(needle.len())?;
    let mut i = 0;
    while i <= last_start {
        i += hay[i..=last_start].iter().position(|&b| b == needle[0])?;
        if hay[i..i + needle.len()] == *needle {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// The running checks over the RDB bytes: magic, length, checksum.
#[derive(Default)]
struct Check {
    total: u64,
    head: Vec<u8>,
    crc: u64,
    /// The last (up to) 9 bytes, not yet in `crc`: the EOF opcode and the
    /// stored checksum once everything has arrived.
    tail: Vec<u8>,
}

impl Check {
    fn feed(&mut self, data: &[u8]) -> Result<(), String> {
        if self.head.len() < 9 {
            let n = (9 - self.head.len()).min(data.len());
            self.head.extend_from_slice(&data[..n]);
            self.check_head()?;
        }
        self.total += data.len() as u64;
        if data.len() >= 9 {
            self.crc = crc64(crc64(self.crc, &self.tail), &data[..data.len() - 9]);
            self.tail.clear();
            self.tail.extend_from_slice(&data[data.len() - 9..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > 9 {
                let extra = self.tail.len() - 9;
                self.crc = crc64(self.crc, &self.tail[..extra]);
                self.tail.drain(..extra);
            }
        }
        Ok(())
    }

    fn check_head(&self) -> Result<(), String> {
        let h = &self.head;
        let n = h.len().min(5);
        if h[..n] != b"REDIS"[..n] || (h.len() == 9 && !h[5..].iter().all(u8::is_ascii_digit)) {
            let shown = String::from_utf8_lossy(h).escape_debug().to_string();
            return Err(format!("does not start with the RDB magic REDIS and a version (it starts with \"{shown}\")"));
        }
        Ok(())
    }

    fn finish(&self) -> Result<(), String> {
        if self.total < 18 {
            return Err(format!("is {} bytes long, too short for an RDB", self.total));
        }
        if self.tail[0] != 0xff {
            return Err("does not end with the RDB end-of-file opcode (it was cut short or is damaged)".into());
        }
        let stored = u64::from_le_bytes(self.tail[1..9].try_into().map_err(|_| "internal: short tail".to_string())?);
        let computed = crc64(self.crc, &self.tail[..1]);
        if stored != 0 && stored != computed {
            return Err(format!("fails its checksum (stored {stored:016x}, computed {computed:016x}): it is damaged"));
        }
        Ok(())
    }
}

/// Passes the RDB bytes of `inner` through, checked (see the module doc).
pub struct RdbReader<R> {
    inner: R,
    /// "the RDB transfer from Redis at 127.0.0.1:6379", "the RDB file /x":
    /// the subject of every error message.
    what: String,
    timeout: Duration,
    framing: Framing,
    received: u64,
    /// Received, not yet released: in the mark form, the last 40 bytes.
    pending: Vec<u8>,
    ready: Vec<u8>,
    ready_pos: usize,
    complete: bool,
    failed: Option<(io::ErrorKind, String)>,
    check: Check,
}

impl<R: Read> RdbReader<R> {
    pub fn new(inner: R, what: String, framing: Framing, timeout: Duration) -> Self {
        RdbReader {
            inner,
            what,
            timeout,
            framing,
            received: 0,
            pending: Vec::new(),
            ready: Vec::new(),
            ready_pos: 0,
            complete: false,
            failed: None,
            check: Check::default(),
        }
    }

    /// Reads until at least `n` bytes are ready (or the end), so that the
    /// magic is checked before [`super::open_rdb`] returns.
    pub fn prefetch(&mut self, n: usize) -> io::Result<()> {
        while self.ready.len() - self.ready_pos < n && !self.complete {
            let mut more = std::mem::take(&mut self.ready);
            more.drain(..self.ready_pos);
            self.ready_pos = 0;
            self.fill().inspect_err(|e| self.failed = Some((e.kind(), e.to_string())))?;
            more.append(&mut self.ready);
            self.ready = more;
        }
        Ok(())
    }

    fn err(&self, kind: io::ErrorKind, msg: impl std::fmt::Display) -> io::Error {
        io::Error::new(kind, format!("{} {msg}", self.what))
    }

    /// Reads once from `inner` into `buf`, mapping a timeout and a
    /// premature end to errors naming the source.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            return match self.inner.read(buf) {
                Ok(0) => {
                    let expected = match self.framing {
                        Framing::Length(len) => format!("of the {len} announced"),
                        Framing::Mark(_) => "without the end-of-transfer mark".into(),
                    };
                    Err(self.err(
                        io::ErrorKind::UnexpectedEof,
                        format!("was cut short after {} bytes {expected}", self.received),
                    ))
                }
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => Err(self.err(
                    io::ErrorKind::TimedOut,
                    format!("stalled: no data for {} s after {} bytes", self.timeout.as_secs(), self.received),
                )),
                Err(e) => {
                    let reason = crate::error::io_reason(&e);
                    Err(self.err(e.kind(), format!("failed after {} bytes: {reason}", self.received)))
                }
            };
        }
    }

    /// Receives the next block into `ready` (which must be drained).
    fn fill(&mut self) -> io::Result<()> {
        self.ready.clear();
        self.ready_pos = 0;
        match self.framing.clone() {
            Framing::Length(len) => {
                let want = (len - self.received).min(CHUNK as u64) as usize;
                if want > 0 {
                    let mut buf = std::mem::take(&mut self.ready);
                    buf.resize(want, 0);
                    let n = self.read_some(&mut buf)?;
                    buf.truncate(n);
                    self.received += n as u64;
                    self.ready = buf;
                }
                self.complete = self.received == len;
            }
            Framing::Mark(mark) => {
                let old = self.pending.len();
                let mut buf = std::mem::take(&mut self.pending);
                buf.resize(old + CHUNK, 0);
                let n = self.read_some(&mut buf[old..]);
                buf.truncate(old + *n.as_ref().unwrap_or(&0));
                self.pending = buf;
                let n = n?;
                self.received += n as u64;
                let len = self.pending.len();
                // the mark may be followed by more (an older server's
                // replication stream) in the same read: search the new bytes
                let from = old.saturating_sub(MARK_LEN - 1);
                let at = find(&self.pending[from..], &mark).map(|i| from + i);
                if let Some(at) = at {
                    self.received -= (len - at) as u64;
                    self.pending.truncate(at);
                    self.ready = std::mem::take(&mut self.pending);
                    self.complete = true;
                } else if len > MARK_LEN {
                    let keep = self.pending[len - MARK_LEN..].to_vec();
                    self.pending.truncate(len - MARK_LEN);
                    self.ready = std::mem::replace(&mut self.pending, keep);
                }
            }
        }
        let fed = self.check.feed(&self.ready);
        fed.and_then(|_| if self.complete { self.check.finish() } else { Ok(()) })
            .map_err(|msg| self.err(io::ErrorKind::InvalidData, msg))
    }
}

impl<R: Read> Read for RdbReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            if let Some((kind, msg)) = &self.failed {
                return Err(io::Error::new(*kind, msg.clone()));
            }
            if self.ready_pos < self.ready.len() {
                let n = buf.len().min(self.ready.len() - self.ready_pos);
                buf[..n].copy_from_slice(&self.ready[self.ready_pos..self.ready_pos + n]);
                self.ready_pos += n;
                return Ok(n);
            }
            if self.complete || buf.is_empty() {
                return Ok(0);
            }
            if let Err(e) = self.fill() {
                self.failed = Some((e.kind(), e.to_string()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A small valid RDB: magic, an aux field, the EOF opcode, the checksum.
    fn rdb(checksum: bool) -> Vec<u8> {
        let mut v = b"REDIS0010\xfa\x09redis-ver\x057.0.0".to_vec();
        v.extend(std::iter::repeat_n(0x41u8, 1000));
        v.push(0xff);
        let crc = if checksum { crc64(0, &v) } else { 0 };
        v.extend_from_slice(&crc.to_le_bytes());
        v
    }

    /// A reader that hands out at most `step` bytes a call.
    struct Trickle(Vec<u8>, usize, usize);
    impl Read for Trickle {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.2).min(self.0.len() - self.1);
            buf[..n].copy_from_slice(&self.0[self.1..self.1 + n]);
            self.1 += n;
            Ok(n)
        }
    }

    fn read_all(input: Vec<u8>, framing: Framing, step: usize) -> io::Result<Vec<u8>> {
        let mut r = RdbReader::new(Trickle(input, 0, step), "the test RDB".into(), framing, Duration::from_secs(1));
        let mut out = Vec::new();
        r.read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn crc64_matches_redis() {
        // the test vector in Redis's crc64.c
        assert_eq!(crc64(0, b"123456789"), 0xe9c6d914c4b8d9ca);
        let data: Vec<u8> = (0..10_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for (start, end) in [(0, 10_000), (3, 9_990), (1, 8), (0, 0)] {
            assert_eq!(crc64(0, &data[start..end]), crc64_bytewise(0, &data[start..end]));
            let split = (start + end) / 2;
            assert_eq!(crc64(crc64(0, &data[start..split]), &data[split..end]), crc64(0, &data[start..end]));
        }
    }

    #[test]
    fn length_framing_passes_exactly_the_rdb() {
        let data = rdb(true);
        for step in [1, 7, 9, 4096] {
            let mut input = data.clone();
            input.extend_from_slice(b"*1\r\n$4\r\nPING\r\n"); // the replication stream that follows
            assert_eq!(read_all(input, Framing::Length(data.len() as u64), step).unwrap(), data);
        }
        assert_eq!(read_all(rdb(false), Framing::Length(rdb(false).len() as u64), 3).unwrap(), rdb(false));
    }

    #[test]
    fn mark_framing_strips_the_mark() {
        let data = rdb(true);
        let mark = [b'a'; MARK_LEN];
        for step in [1, 13, 40, 41, 1 << 20] {
            let mut input = data.clone();
            input.extend_from_slice(&mark);
            input.extend_from_slice(b"never read");
            assert_eq!(read_all(input, Framing::Mark(mark), step).unwrap(), data, "step {step}");
        }
    }

    #[test]
    fn a_cut_short_transfer_is_an_error() {
        let data = rdb(true);
        let full = Framing::Length(data.len() as u64);
        for cut in [0, 5, 100, data.len() - 1] {
            let e = read_all(data[..cut].to_vec(), full.clone(), 64).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
            assert!(e.to_string().contains("cut short"), "{e}");
            let e = read_all(data[..cut].to_vec(), Framing::Mark([b'm'; MARK_LEN]), 64).unwrap_err();
            assert!(e.to_string().contains("without the end-of-transfer mark"), "{e}");
        }
    }

    #[test]
    fn damage_and_wrong_content_are_errors() {
        let mut data = rdb(true);
        data[500] ^= 1;
        let e = read_all(data.clone(), Framing::Length(data.len() as u64), 100).unwrap_err();
        assert!(e.to_string().contains("fails its checksum"), "{e}");
        // a payload that ends early, then the mark: no EOF opcode
        let mut short = rdb(true)[..600].to_vec();
        short.extend_from_slice(&[b'z'; MARK_LEN]);
        let e = read_all(short, Framing::Mark([b'z'; MARK_LEN]), 100).unwrap_err();
        assert!(e.to_string().contains("end-of-file opcode"), "{e}");
        let e = read_all(b"-ERR not an rdb at all".to_vec(), Framing::Length(22), 100).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(e.to_string().starts_with("the test RDB does not start with the RDB magic"), "{e}");
    }

    #[test]
    fn errors_stick() {
        let data = rdb(true);
        let mut r = RdbReader::new(
            Trickle(data[..50].to_vec(), 0, 10),
            "x".into(),
            Framing::Length(data.len() as u64),
            Duration::from_secs(1),
        );
        let mut out = Vec::new();
        assert!(r.read_to_end(&mut out).is_err());
        let mut buf = [0u8; 10];
        assert!(r.read(&mut buf).is_err());
        assert!(r.read(&mut buf).is_err());
    }
}
