//! The `backup_label` that `pg_backup_stop` returns: where recovery of a
//! base backup starts.

use super::wal::{Lsn, WalFile};
use crate::error::{Error, Result};

/// What cairn reads from a backup label.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupLabel {
    pub start_lsn: Lsn,
    pub start_file: WalFile,
    pub checkpoint_lsn: Lsn,
    pub timeline: u32,
}

impl BackupLabel {
    /// Parses the lines `START WAL LOCATION: 0/2000028 (file
    /// 000000010000000000000002)`, `CHECKPOINT LOCATION: …` and `START
    /// TIMELINE: 1` (the others are kept in the text, not needed here).
    pub fn parse(text: &str) -> Result<Self> {
        let bad = |why: &str| Error::invalid(format!("backup_label from PostgreSQL: {why}"));
        let field = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix(key).map(str::trim)).ok_or_else(|| bad(&format!("no {key}")))
        };
        let start = field("START WAL LOCATION:")?;
        let (lsn, rest) = start.split_once(' ').ok_or_else(|| bad("START WAL LOCATION has no file"))?;
        let file = rest
            .trim()
            .strip_prefix("(file ")
            .and_then(|r| r.strip_suffix(')'))
            .and_then(WalFile::parse)
            .ok_or_else(|| bad("START WAL LOCATION names no segment"))?;
        let timeline = field("START TIMELINE:")?.parse().map_err(|_| bad("START TIMELINE is not a number"))?;
        Ok(BackupLabel {
            start_lsn: Lsn::parse(lsn)?,
            start_file: file,
            checkpoint_lsn: Lsn::parse(field("CHECKPOINT LOCATION:")?)?,
            timeline,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_label_of_postgresql_15() {
        let text = "START WAL LOCATION: 0/2000028 (file 000000010000000000000002)\n\
                    CHECKPOINT LOCATION: 0/2000060\nBACKUP METHOD: streamed\nBACKUP FROM: primary\n\
                    START TIME: 2026-12-05 08:00:00 UTC\nLABEL: cairn\nSTART TIMELINE: 1\n";
        let l = BackupLabel::parse(text).unwrap();
        assert_eq!(l.start_lsn, Lsn(0x2000028));
        assert_eq!(l.checkpoint_lsn, Lsn(0x2000060));
        assert_eq!(l.timeline, 1);
        assert_eq!(l.start_file.to_string(), "000000010000000000000002");
        assert!(BackupLabel::parse("START WAL LOCATION: 0/2000028\n").is_err());
        assert!(BackupLabel::parse("").is_err());
    }
}
