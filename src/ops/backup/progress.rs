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

pub struct Progress {
    bar: Option<ProgressBar>,
    files: u64,
    bytes: u64,
    totals: Option<Arc<Totals>>,
}

impl Progress {
    pub fn new(enabled: bool, totals: Option<Arc<Totals>>) -> Self {
        let bar = enabled.then(|| {
            let b = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            b.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {msg} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
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
