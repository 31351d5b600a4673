//! Progress for people: an indicatif bar on stderr (done/total when the input is a file,
//! rate, errors), shown only when stderr is a terminal. The total is counted on a
//! background thread so the crawl starts at once.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::EngineStats;

/// How often the bar is redrawn.
pub const TICK: Duration = Duration::from_millis(100);

/// A running progress display; [`ProgressDisplay::finish`] removes it.
pub struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    ticker: JoinHandle<()>,
}

impl ProgressDisplay {
    /// Start drawing. `count_lines_of`: a regular file whose non-blank lines are the total.
    pub fn start(stats: Arc<EngineStats>, count_lines_of: Option<PathBuf>) -> ProgressDisplay {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} URLs  {per_sec}  {msg}  [{elapsed_precise}, eta {eta}]",
            )
            .expect("static template is valid"),
        );
        if let Some(path) = count_lines_of {
            let bar = bar.clone();
            std::thread::spawn(move || {
                if let Ok(n) = count_non_blank_lines(&path) {
                    bar.set_length(n);
                }
            });
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let ticker = std::thread::spawn(move || {
            while !flag.load(Ordering::Relaxed) {
                let s = stats.summary();
                bar.set_position(s.urls);
                let errors: u64 = s.errors.values().sum();
                bar.set_message(format!("{} ok, {errors} failed", s.ok));
                std::thread::sleep(TICK);
            }
            bar.finish_and_clear();
        });
        ProgressDisplay { stop, ticker }
    }

    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ticker.join();
    }
}

/// Non-blank lines of a file, streamed.
pub fn count_non_blank_lines(path: &std::path::Path) -> std::io::Result<u64> {
    let mut r = BufReader::with_capacity(1 << 20, File::open(path)?);
    let mut n = 0u64;
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bounded by the file, not by memory: lines are dropped as soon as they are counted.
        if r.read_until(b'\n', &mut line)? == 0 {
            return Ok(n);
        }
        if line.iter().any(|c| !c.is_ascii_whitespace()) {
            n += 1;
        }
    }
}
