//! Peak anonymous memory of this process (`RssAnon`: heap and other private pages, not pages
//! mapped from the checkpoint files), sampled in the background while a job runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// This process's current `RssAnon` in bytes, if the kernel reports it.
pub fn rss_anon_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("RssAnon:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples `RssAnon` every few milliseconds until stopped and keeps the maximum.
pub struct PeakMemorySampler {
    peak: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PeakMemorySampler {
    pub fn start(every: Duration) -> Self {
        let peak = Arc::new(AtomicU64::new(rss_anon_bytes().unwrap_or(0)));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (peak, stop) = (peak.clone(), stop.clone());
            std::thread::Builder::new()
                .name("rss-sampler".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        if let Some(now) = rss_anon_bytes() {
                            peak.fetch_max(now, Ordering::Relaxed);
                        }
                        std::thread::sleep(every);
                    }
                })
                .ok()
        };
        Self { peak, stop, thread }
    }

    /// Stops sampling and returns the peak in bytes.
    pub fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
        if let Some(now) = rss_anon_bytes() {
            self.peak.fetch_max(now, Ordering::Relaxed);
        }
        self.peak.load(Ordering::Relaxed)
    }
}
