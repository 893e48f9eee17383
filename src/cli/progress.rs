//! A progress bar on stderr for `restore` and `check --read-data`, drawn
//! from the [`cairn::progress::Meter`] the library counts on. Only on a
//! terminal: pipes, files and cron get nothing.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use cairn::progress::Meter;

/// The bar's layout: what is counted, amount and total, speed, time left.
pub fn template(label: &str) -> String {
    format!("{{spinner}} [{{elapsed_precise}}] {label} {{bytes}}/{{total_bytes}} {{bytes_per_sec}} ETA {{eta}}")
}

/// Whether to draw progress: stderr is a terminal and `-q` was not given.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// A bar being drawn; cleared when dropped.
pub struct Shown {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Draws `meter` under `label` until the returned value is dropped, if
/// `enabled`.
pub fn show(meter: Arc<Meter>, label: &str, enabled: bool) -> Shown {
    let stop = Arc::new(AtomicBool::new(false));
    let thread = enabled.then(|| {
        let (stop, label) = (stop.clone(), label.to_string());
        std::thread::spawn(move || {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(4));
            bar.set_style(
                ProgressStyle::with_template(&template(&label)).unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            while !stop.load(Ordering::Relaxed) {
                let (done, total) = meter.get();
                bar.set_length(total);
                bar.set_position(done);
                bar.tick();
                std::thread::sleep(Duration::from_millis(200));
            }
            bar.finish_and_clear();
        })
    });
    Shown { stop, thread }
}

impl Drop for Shown {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_and_a_disabled_bar_draws_nothing() {
        assert!(ProgressStyle::with_template(&template("read")).is_ok());
        let shown = show(Arc::new(Meter::default()), "read", false);
        assert!(shown.thread.is_none());
    }
}
