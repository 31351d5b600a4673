//! Progress for people: an indicatif bar on stderr (done/total when the input is a file,
//! rate, errors), shown only when stderr is a terminal. The total is counted on a
//! background thread so the crawl starts at once.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::engine::EngineStats;
use crate::intake::{LineReader, ReadError, ReadLimits};

/// How often the bar is redrawn.
pub(crate) const TICK: Duration = Duration::from_millis(100);
/// Read buffer of the line count.
const COUNT_BUFFER: usize = 1 << 20;

/// A running progress display; [`ProgressDisplay::finish`] removes it.
pub(crate) struct ProgressDisplay {
    stop: Arc<AtomicBool>,
    ticker: JoinHandle<()>,
}

impl ProgressDisplay {
    /// Start drawing. `count_lines_of`: a regular file whose non-blank lines are the total.
    pub(crate) fn start(
        stats: Arc<EngineStats>,
        count_lines_of: Option<PathBuf>,
    ) -> ProgressDisplay {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {pos}/{len} URLs  {per_sec}  {msg}  [{elapsed_precise}, eta {eta}]",
            )
            .expect("static template is valid"),
        );
        let stop = Arc::new(AtomicBool::new(false));
        if let Some(path) = count_lines_of {
            let (bar, stop) = (bar.clone(), stop.clone());
            std::thread::spawn(move || {
                if let Ok(n) = count_non_blank_lines(&path, stop) {
                    bar.set_length(n);
                }
            });
        }
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

    pub(crate) fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.ticker.join();
    }
}

/// Non-blank lines of a file: the lines `intake`'s reader yields, counted with the same
/// reader (so the total matches the records), streamed; ends early once `stop` is set.
fn count_non_blank_lines(path: &Path, stop: Arc<AtomicBool>) -> Result<u64, ReadError> {
    let file = BufReader::with_capacity(COUNT_BUFFER, File::open(path)?);
    let limits = ReadLimits {
        stop: Some(stop),
        max_bytes: None,
    };
    LineReader::new(file, limits).count_non_blank()
}
