//! Progress on a terminal: files, bytes, throughput and ETA.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Totals found by the scanner, which runs beside the backup.
#[derive(Default)]
pub struct Totals {
    pub files: AtomicU64,
    pub bytes: AtomicU64,
    pub done: std::sync::atomic::AtomicBool,
}

/// The bar's layout. A stream's length is unknown until it ends: it shows
/// the bytes read and the throughput, no total and no ETA.
fn template(stream: bool) -> &'static str {
    if stream {
        "{spinner} [{elapsed_precise}] {bytes} read, {bytes_per_sec}"
    } else {
        "{spinner} [{elapsed_precise}] {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}"
    }
}

pub struct Progress {
    bar: Option<ProgressBar>,
    files: u64,
    bytes: u64,
    totals: Option<Arc<Totals>>,
}

impl Progress {
    pub fn new(enabled: bool, totals: Option<Arc<Totals>>) -> Self {
        let stream = totals.is_none();
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            b.set_style(
                ProgressStyle::with_template(template(stream)).unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            b.enable_steady_tick(Duration::from_millis(250));
            b
        });
        Self { bar, files: 0, bytes: 0, totals }
    }

    pub fn file_done(&mut self) {
        self.files += 1;
        if let Some(b) = &self.bar {
            let total = self.totals.as_ref().map(|t| t.files.load(Ordering::Relaxed)).unwrap_or(0);
            if total > 0 {
                b.set_message(format!("{}/{} files", self.files, total));
            } else {
                b.set_message(format!("{} files", self.files));
            }
            if let Some(t) = &self.totals {
                b.set_length(t.bytes.load(Ordering::Relaxed).max(self.bytes));
            }
        }
    }

    pub fn bytes(&mut self, n: u64) {
        self.bytes += n;
        if let Some(b) = &self.bar {
            b.set_position(self.bytes);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_shows_bytes_and_throughput_without_a_total() {
        for stream in [true, false] {
            assert!(ProgressStyle::with_template(template(stream)).is_ok());
        }
        let t = template(true);
        assert!(t.contains("{bytes}") && t.contains("{bytes_per_sec}"), "{t}");
        assert!(!t.contains("total_bytes") && !t.contains("eta"), "{t}");
        assert!(template(false).contains("{total_bytes}"));
    }
}
