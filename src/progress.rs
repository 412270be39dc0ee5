//! Progress for people: indicatif bars on a terminal; a plain line every few seconds when
//! standard error is not a terminal; nothing with `--json` (the document is the output).

use ferry_core::size::format_size;
use ferry_engine::Stats;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct Progress {
    task: Option<tokio::task::JoinHandle<()>>,
    bar: Option<ProgressBar>,
}

const PLAIN_EVERY: Duration = Duration::from_secs(5);

impl Progress {
    /// Objects listed so far.
    pub fn listing(stats: Arc<Stats>, json: bool) -> Progress {
        Self::start(json, move |bar, plain, started| {
            let listed = Stats::get(&stats.listed);
            match bar {
                Some(bar) => bar.set_message(format!("listing: {listed} objects")),
                None if plain => eprintln!("listing: {listed} objects ({:.0}s)", started.elapsed().as_secs_f64()),
                None => {}
            }
        })
    }

    /// Bytes and objects against the totals, with rate and ETA.
    pub fn transfer(verb: &'static str, stats: Arc<Stats>, json: bool) -> Progress {
        Self::start(json, move |bar, plain, started| {
            let (total, done) = (Stats::get(&stats.total_bytes), Stats::get(&stats.bytes_done));
            let (objects, objects_done, failed) =
                (Stats::get(&stats.total_objects), Stats::get(&stats.objects_done), Stats::get(&stats.objects_failed));
            match bar {
                Some(bar) => {
                    if bar.length() != Some(total) {
                        bar.set_length(total);
                    }
                    bar.set_position(done);
                    bar.set_message(format!("{verb}: {objects_done}/{objects} objects, {failed} failed"));
                }
                None if plain => {
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprintln!(
                        "{verb}: {objects_done}/{objects} objects, {}/{} ({}/s), {failed} failed",
                        format_size(done),
                        format_size(total),
                        format_size(rate as u64)
                    );
                }
                None => {}
            }
        })
    }

    fn start(json: bool, tick: impl Fn(Option<&ProgressBar>, bool, Instant) + Send + 'static) -> Progress {
        if json {
            return Progress { task: None, bar: None };
        }
        let started = Instant::now();
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}")
                    .expect("template")
                    .progress_chars("=> "),
            );
            bar
        });
        let ticker_bar = bar.clone();
        let task = tokio::spawn(async move {
            let every = if ticker_bar.is_some() { Duration::from_millis(150) } else { PLAIN_EVERY };
            let mut interval = tokio::time::interval(every);
            interval.tick().await;
            loop {
                interval.tick().await;
                tick(ticker_bar.as_ref(), true, started);
            }
        });
        Progress { task: Some(task), bar }
    }

    pub fn finish(self) {
        if let Some(task) = self.task {
            task.abort();
        }
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}
