//! PostgreSQL's WAL file names, LSNs and segment headers: what cairn must
//! know of PostgreSQL's on-disk WAL to archive it safely.
//!
//! File names (`%f`), as PostgreSQL archives them:
//!
//! ```text
//! 000000010000000A000000FF              segment: timeline, then segment number
//!                                       as two 8-digit halves (log, seg)
//! 000000010000000A000000FF.partial      the last, incomplete segment of a
//!                                       timeline, archived at promotion
//! 000000010000000A000000FF.00000028.backup   backup history file
//! 00000002.history                      timeline history file
//! ```
//!
//! The segment number of `log`/`seg` is `log * (2^32 / segment size) + seg`.

use std::fmt;

use crate::error::{Error, Result};

/// A log sequence number: a byte position in the WAL stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl Lsn {
    /// Parses PostgreSQL's `X/Y` form (hex halves).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || Error::invalid(format!("invalid LSN {s:?}: expected the form 0/16B3748 (two hex numbers)"));
        let (hi, lo) = s.trim().split_once('/').ok_or_else(bad)?;
        let hex = |p: &str| {
            if p.is_empty() || p.len() > 8 {
                return Err(bad());
            }
            u32::from_str_radix(p, 16).map_err(|_| bad())
        };
        Ok(Lsn((u64::from(hex(hi)?) << 32) | u64::from(hex(lo)?)))
    }

    /// The segment that holds this position.
    pub fn segment(self, seg_size: u64) -> u64 {
        self.0 / seg_size
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xffff_ffff)
    }
}

/// The kind of an archived WAL file, parsed from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WalFile {
    /// A whole segment.
    Segment { tli: u32, log: u32, seg: u32 },
    /// `<segment>.partial`.
    Partial { tli: u32, log: u32, seg: u32 },
    /// `<segment>.<offset>.backup`.
    BackupHistory { tli: u32, log: u32, seg: u32, offset: u32 },
    /// `<tli>.history`.
    History { tli: u32 },
}

fn hex8(s: &str) -> Option<u32> {
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)) {
        u32::from_str_radix(s, 16).ok()
    } else {
        None
    }
}

fn hex24(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 || !s.is_ascii() {
        return None;
    }
    Some((hex8(&s[0..8])?, hex8(&s[8..16])?, hex8(&s[16..24])?))
}

impl WalFile {
    /// Parses a file name as PostgreSQL writes it (upper-case hex).
    pub fn parse(name: &str) -> Option<Self> {
        if let Some(t) = name.strip_suffix(".history") {
            return hex8(t).filter(|&tli| tli > 0).map(|tli| WalFile::History { tli });
        }
        if let Some(s) = name.strip_suffix(".partial") {
            let (tli, log, seg) = hex24(s)?;
            return (tli > 0).then_some(WalFile::Partial { tli, log, seg });
        }
        if let Some(s) = name.strip_suffix(".backup") {
            let (s, off) = s.split_once('.')?;
            let (tli, log, seg) = hex24(s)?;
            return (tli > 0).then_some(WalFile::BackupHistory { tli, log, seg, offset: hex8(off)? });
        }
        let (tli, log, seg) = hex24(name)?;
        (tli > 0).then_some(WalFile::Segment { tli, log, seg })
    }

    /// A segment's name.
    pub fn segment(tli: u32, segno: u64, seg_size: u64) -> Self {
        let per = segments_per_log(seg_size);
        WalFile::Segment { tli, log: (segno / per) as u32, seg: (segno % per) as u32 }
    }

    pub fn timeline(&self) -> u32 {
        match *self {
            WalFile::Segment { tli, .. }
            | WalFile::Partial { tli, .. }
            | WalFile::BackupHistory { tli, .. }
            | WalFile::History { tli } => tli,
        }
    }

    /// The segment number, for names that carry one.
    pub fn segno(&self, seg_size: u64) -> Option<u64> {
        match *self {
            WalFile::Segment { log, seg, .. }
            | WalFile::Partial { log, seg, .. }
            | WalFile::BackupHistory { log, seg, .. } => {
                Some(u64::from(log) * segments_per_log(seg_size) + u64::from(seg))
            }
            WalFile::History { .. } => None,
        }
    }

    /// Whether the file starts with a WAL page header (segments and
    /// partial segments).
    pub fn has_header(&self) -> bool {
        matches!(self, WalFile::Segment { .. } | WalFile::Partial { .. })
    }

    /// The folder this file is kept in under `wal/<system id>/`: the first
    /// 16 digits (timeline and log) for segment-based names, none for
    /// timeline history files.
    pub fn folder(&self) -> Option<String> {
        match *self {
            WalFile::Segment { tli, log, .. }
            | WalFile::Partial { tli, log, .. }
            | WalFile::BackupHistory { tli, log, .. } => Some(format!("{tli:08X}{log:08X}")),
            WalFile::History { .. } => None,
        }
    }
}

impl fmt::Display for WalFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            WalFile::Segment { tli, log, seg } => write!(f, "{tli:08X}{log:08X}{seg:08X}"),
            WalFile::Partial { tli, log, seg } => write!(f, "{tli:08X}{log:08X}{seg:08X}.partial"),
            WalFile::BackupHistory { tli, log, seg, offset } => {
                write!(f, "{tli:08X}{log:08X}{seg:08X}.{offset:08X}.backup")
            }
            WalFile::History { tli } => write!(f, "{tli:08X}.history"),
        }
    }
}

/// Segments per 4 GiB "log" (the middle 8 digits of a segment name).
pub fn segments_per_log(seg_size: u64) -> u64 {
    0x1_0000_0000 / seg_size
}

/// Whether `n` is a segment size PostgreSQL allows (a power of two from
/// 1 MiB to 1 GiB).
pub fn valid_segment_size(n: u64) -> bool {
    n.is_power_of_two() && (1 << 20..=1 << 30).contains(&n)
}

/// XLOG_PAGE_MAGIC of each major version that cairn knows (from
/// PostgreSQL's `xlog_internal.h`).
const PAGE_MAGICS: &[(u16, u32)] = &[
    (0xD098, 110_000),
    (0xD101, 120_000),
    (0xD106, 130_000),
    (0xD10D, 140_000),
    (0xD110, 150_000),
    (0xD113, 160_000),
    (0xD116, 170_000),
];

/// `XLP_LONG_HEADER`: the first page of a segment has the long header.
const XLP_LONG_HEADER: u16 = 0x0002;

/// What the first (long) page header of a segment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    pub magic: u16,
    pub timeline: u32,
    pub page_addr: u64,
    pub system_id: u64,
    pub seg_size: u32,
    pub block_size: u32,
}

impl SegmentHeader {
    /// Decodes `XLogLongPageHeaderData` from a segment's first bytes:
    ///
    /// ```text
    /// 0  xlp_magic u16 | 2 xlp_info u16 | 4 xlp_tli u32 | 8 xlp_pageaddr u64
    /// 16 xlp_rem_len u32 | 20 padding | 24 xlp_sysid u64 | 32 xlp_seg_size u32
    /// 36 xlp_xlog_blcksz u32
    /// ```
    pub fn decode(b: &[u8]) -> Result<Self> {
        if b.len() < 40 {
            return Err(Error::invalid("too short for a WAL segment header"));
        }
        let u16_at = |o: usize| u16::from_le_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_le_bytes(b[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().expect("8 bytes"));
        if u16_at(2) & XLP_LONG_HEADER == 0 {
            return Err(Error::invalid("the first page has no long header: not the start of a WAL segment"));
        }
        Ok(SegmentHeader {
            magic: u16_at(0),
            timeline: u32_at(4),
            page_addr: u64_at(8),
            system_id: u64_at(24),
            seg_size: u32_at(32),
            block_size: u32_at(36),
        })
    }

    /// The PostgreSQL major version (as `server_version_num / 10000 * 10000`)
    /// whose magic this is, if known.
    pub fn version(&self) -> Option<u32> {
        PAGE_MAGICS.iter().find(|(m, _)| *m == self.magic).map(|(_, v)| *v)
    }

    /// Checks that this header belongs at the start of `file`, a segment of
    /// `len` bytes: a known magic, a valid segment size equal to the file's
    /// length, and a page address that is the segment's own position.
    pub fn check(&self, file: &WalFile, len: u64) -> Result<()> {
        let name = file.to_string();
        if self.version().is_none() {
            return Err(Error::invalid(format!(
                "{name}: unknown WAL page magic {:#06X} (not a WAL segment, or a PostgreSQL version cairn does not know)",
                self.magic
            )));
        }
        let seg_size = u64::from(self.seg_size);
        if !valid_segment_size(seg_size) {
            return Err(Error::invalid(format!("{name}: invalid segment size {} in its header", self.seg_size)));
        }
        if len != seg_size {
            return Err(Error::invalid(format!(
                "{name}: the file is {len} bytes but its header says segments are {seg_size} bytes (a truncated or partly written file?)"
            )));
        }
        let segno = file.segno(seg_size).expect("segments have a number");
        if self.page_addr != segno * seg_size {
            return Err(Error::invalid(format!(
                "{name}: its header is for position {}, not for this segment's {} (the file was renamed or is another segment)",
                Lsn(self.page_addr),
                Lsn(segno * seg_size)
            )));
        }
        Ok(())
    }
}

/// Parses a timeline history file (`<tli>.history`): one line per ancestor,
/// `<parent timeline> <tab> <switch point LSN> <tab> <reason>`, oldest first;
/// `#` comments and blank lines are skipped.
pub fn parse_history(text: &str) -> Result<Vec<(u32, Lsn)>> {
    let mut v = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let mut f = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (f.next(), f.next()) else {
            return Err(Error::corrupt(format!("timeline history line {line:?} has no switch point")));
        };
        let tli = tli.parse().map_err(|_| Error::corrupt(format!("timeline history line {line:?}: bad timeline")))?;
        v.push((tli, Lsn::parse(lsn).map_err(|_| Error::corrupt(format!("timeline history line {line:?}: bad LSN")))?));
    }
    Ok(v)
}

/// Whether timeline `tli`, with history `history`, contains the position
/// `lsn` of timeline `on`: `on` is `tli` itself, or an ancestor that `tli`
/// left after `lsn`.
pub fn timeline_contains(tli: u32, history: &[(u32, Lsn)], on: u32, lsn: Lsn) -> bool {
    tli == on || history.iter().any(|(t, switch)| *t == on && *switch > lsn)
}

/// Reads the system identifier from a data directory's `global/pg_control`
/// (its first 8 bytes).
pub fn control_system_id(pgdata: &std::path::Path) -> std::io::Result<u64> {
    use std::io::Read as _;
    let mut b = [0u8; 8];
    std::fs::File::open(pgdata.join("global/pg_control"))?.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SEG: u64 = 16 << 20;

    #[test]
    fn names_round_trip() {
        for n in [
            "000000010000000A000000FF",
            "00000002000000000000003C.partial",
            "000000010000000000000002.00000028.backup",
            "0000000A.history",
        ] {
            let f = WalFile::parse(n).unwrap_or_else(|| panic!("{n}"));
            assert_eq!(f.to_string(), n);
        }
        assert_eq!(WalFile::parse("0000000A.history"), Some(WalFile::History { tli: 10 }));
        let s = WalFile::parse("000000010000000A000000FF").unwrap();
        assert_eq!(s.segno(SEG), Some(0xA * 256 + 0xFF));
        assert_eq!(WalFile::segment(1, 0xA * 256 + 0xFF, SEG), s);
        assert_eq!(s.folder().as_deref(), Some("000000010000000A"));
    }

    #[test]
    fn bad_names_are_refused() {
        for n in [
            "",
            "00000001000000000000000",
            "000000010000000000000001x",
            "000000010000000a000000ff",
            "00000000.history",
            "000000000000000000000001",
            "RECOVERYXLOG",
            "000000010000000000000002.backup",
            "../00000001.history",
            "010000\u{752}9142957p9,xxxxxx",
            "00000001000000000000000\u{e9}",
        ] {
            assert_eq!(WalFile::parse(n), None, "{n}");
        }
    }

    #[test]
    fn histories() {
        let h =
            parse_history("1\t0/6000000\tno recovery target specified\n\n2\t0/9000000\tbefore 2026-12-05\n").unwrap();
        assert_eq!(h, [(1, Lsn(0x6000000)), (2, Lsn(0x9000000))]);
        assert!(timeline_contains(3, &h, 1, Lsn(0x5000000)));
        assert!(!timeline_contains(3, &h, 1, Lsn(0x6000000)));
        assert!(timeline_contains(3, &h, 2, Lsn(0x8000000)));
        assert!(timeline_contains(3, &h, 3, Lsn(0xF000000)));
        assert!(parse_history("1 nope").is_err());
    }

    #[test]
    fn lsns() {
        let l = Lsn::parse("16/B374D848").unwrap();
        assert_eq!(l.0, 0x16_B374_D848);
        assert_eq!(l.to_string(), "16/B374D848");
        assert_eq!(Lsn::parse("0/0").unwrap(), Lsn(0));
        for bad in ["", "0", "1/", "/1", "x/1", "123456789/0", "1/2/3"] {
            assert!(Lsn::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Lsn(0x1_0300_0028).segment(SEG), 0x103);
    }

    fn header(segno: u64) -> Vec<u8> {
        let mut b = vec![0u8; 40];
        b[0..2].copy_from_slice(&0xD110u16.to_le_bytes());
        b[2..4].copy_from_slice(&XLP_LONG_HEADER.to_le_bytes());
        b[4..8].copy_from_slice(&1u32.to_le_bytes());
        b[8..16].copy_from_slice(&(segno * SEG).to_le_bytes());
        b[24..32].copy_from_slice(&7_318_000_000_000_000_001u64.to_le_bytes());
        b[32..36].copy_from_slice(&(SEG as u32).to_le_bytes());
        b[36..40].copy_from_slice(&8192u32.to_le_bytes());
        b
    }

    #[test]
    fn headers_are_checked_against_the_name() {
        let f = WalFile::segment(1, 0x1FF, SEG);
        let h = SegmentHeader::decode(&header(0x1FF)).unwrap();
        assert_eq!(h.system_id, 7_318_000_000_000_000_001);
        assert_eq!(h.version(), Some(150_000));
        h.check(&f, SEG).unwrap();
        let other = WalFile::segment(1, 0x200, SEG);
        assert!(h.check(&other, SEG).unwrap_err().to_string().contains("renamed"));
        assert!(h.check(&f, SEG / 2).unwrap_err().to_string().contains("truncated"));
        let mut b = header(0x1FF);
        b[0] = 0;
        assert!(SegmentHeader::decode(&b).unwrap().check(&f, SEG).is_err());
        let mut b = header(0x1FF);
        b[2] = 0;
        assert!(SegmentHeader::decode(&b).is_err());
        assert!(SegmentHeader::decode(&b[..10]).is_err());
    }
}
