//! Progress bars with rate and ETA on a terminal; nothing when piped or with `--json`.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};

/// A byte-progress bar for `total` bytes, or a hidden one.
pub fn bytes(enabled: bool, total: u64, what: &str) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} ETA {eta}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(what.to_string());
    bar
}
