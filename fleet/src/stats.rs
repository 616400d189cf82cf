//! Figures: heartbeat round trips, and a process's memory and CPU time read from `/proc`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rivet_agent::config::{HeartbeatObserver, HeartbeatOutcome};

/// Heartbeat round trips in milliseconds, and how many heartbeats failed.
#[derive(Debug, Default)]
pub struct Heartbeats {
    samples: Mutex<(Vec<f64>, u64)>,
}

/// Percentiles of a set of round trips, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    /// Heartbeats accepted.
    pub count: usize,
    /// Heartbeats that failed (any error or status other than 2xx).
    pub failed: u64,
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Slowest.
    pub max: f64,
}

impl Heartbeats {
    /// An observer that records into `self`, for the agents' configuration.
    pub fn observer(self: &Arc<Self>) -> HeartbeatObserver {
        let sink = Arc::clone(self);
        HeartbeatObserver(Arc::new(move |round_trip: Duration, outcome: HeartbeatOutcome<'_>| {
            let mut samples = sink.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            if outcome == HeartbeatOutcome::Accepted {
                samples.0.push(round_trip.as_secs_f64() * 1000.0);
            } else {
                samples.1 += 1;
            }
        }))
    }

    /// Forget everything recorded so far (the start of a measurement window).
    pub fn reset(&self) {
        *self.samples.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Default::default();
    }

    /// What was recorded since the last reset.
    pub fn summary(&self) -> Summary {
        let (mut ms, failed) = self
            .samples
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        ms.sort_by(f64::total_cmp);
        Summary {
            count: ms.len(),
            failed,
            p50: percentile(&ms, 0.5),
            p99: percentile(&ms, 0.99),
            max: ms.last().copied().unwrap_or(f64::NAN),
        }
    }
}

/// The `p` quantile (0 to 1) of `sorted` by nearest rank; NaN when empty.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// A field of `/proc/<pid>/status` given in kB (`"VmHWM:"`, `"VmRSS:"`), in KiB.
pub fn proc_kib(pid: u32, field: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// The time between two consecutive events of the same machine, over every machine.
#[derive(Debug, Clone, PartialEq)]
pub struct Gap {
    /// The earlier event (`agent erase_devices done`).
    pub from: String,
    /// The event that followed it (`agent write_image`).
    pub to: String,
    /// Machines on which `to` followed `from`.
    pub count: usize,
    /// Median, seconds.
    pub p50_s: f64,
    /// Slowest, seconds.
    pub max_s: f64,
}

/// Where a run's time went: journal entries (`"<node>: <event>"` with their times) since
/// `since`, grouped by machine, and the gaps between each machine's consecutive events
/// summarised per pair of events, in the order the pairs first occurred.
pub fn timeline(entries: &[(Instant, String)], since: Instant) -> Vec<Gap> {
    let mut last: HashMap<&str, (Instant, &str)> = HashMap::new();
    let mut pairs: Vec<((String, String), Vec<f64>)> = Vec::new();
    for (at, entry) in entries.iter().filter(|(at, _)| *at >= since) {
        let Some((node, event)) = entry.split_once(": ") else {
            continue;
        };
        if let Some((before, previous)) = last.insert(node, (*at, event)) {
            let gap = at.duration_since(before).as_secs_f64();
            let key = (previous.to_owned(), event.to_owned());
            match pairs.iter_mut().find(|(k, _)| *k == key) {
                Some((_, gaps)) => gaps.push(gap),
                None => pairs.push((key, vec![gap])),
            }
        }
    }
    pairs
        .into_iter()
        .map(|((from, to), mut gaps)| {
            gaps.sort_by(f64::total_cmp);
            Gap {
                from,
                to,
                count: gaps.len(),
                p50_s: percentile(&gaps, 0.5),
                max_s: gaps.last().copied().unwrap_or(f64::NAN),
            }
        })
        .collect()
}

fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which may hold spaces: state, ppid, … (proc(5) numbering
    // minus 3).
    Some(stat.rsplit_once(')')?.1.split_whitespace().map(str::to_owned).collect())
}

fn ticks(fields: &[String], at: &[usize]) -> u64 {
    at.iter().filter_map(|&i| fields.get(i)?.parse::<u64>().ok()).sum()
}

/// User plus system CPU time of `pid` in seconds (from `/proc/<pid>/stat`, 100 ticks a second).
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    Some(ticks(&stat_fields(pid)?, &[11, 12]) as f64 / 100.0)
}

/// `pid` and every process descended from it (Ironic forks API workers; Rivet does not).
pub fn process_tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        if let Some(ppid) = stat_fields(child).and_then(|f| f.get(1)?.parse::<u32>().ok()) {
            parents.push((child, ppid));
        }
    }
    let mut tree = vec![pid];
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i];
        tree.extend(parents.iter().filter(|(_, p)| *p == parent).map(|(c, _)| *c));
        i += 1;
    }
    tree
}

/// CPU seconds of `pid`, its live descendants and its reaped children.
pub fn tree_cpu_seconds(pid: u32) -> f64 {
    let reaped = stat_fields(pid).map_or(0, |f| ticks(&f, &[13, 14]));
    let live: u64 = process_tree(pid)
        .into_iter()
        .filter_map(stat_fields)
        .map(|f| ticks(&f, &[11, 12]))
        .sum();
    (live + reaped) as f64 / 100.0
}

/// Sum of the peak resident memory (VmHWM) of `pid` and its descendants, in KiB. Pages the
/// processes share count once per process, so for a forking server this is an upper bound.
pub fn tree_peak_rss_kib(pid: u32) -> u64 {
    process_tree(pid)
        .into_iter()
        .filter_map(|p| proc_kib(p, "VmHWM:"))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_take_the_nearest_rank() {
        let ms: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&ms, 0.5), 51.0);
        assert_eq!(percentile(&ms, 0.99), 99.0);
        assert_eq!(percentile(&ms, 1.0), 100.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn the_observer_counts_failures_apart() {
        let beats = Arc::new(Heartbeats::default());
        let observer = beats.observer();
        let refused = HeartbeatOutcome::Refused {
            status: 400,
            message: "Invalid or missing agent token received.",
        };
        (observer.0)(Duration::from_millis(3), HeartbeatOutcome::Accepted);
        (observer.0)(Duration::from_millis(7), HeartbeatOutcome::Accepted);
        (observer.0)(Duration::from_secs(30), refused);
        let summary = beats.summary();
        assert_eq!((summary.count, summary.failed, summary.max), (2, 1, 7.0));
        beats.reset();
        assert_eq!(beats.summary().count, 0);
    }

    #[test]
    fn the_timeline_pairs_each_machines_consecutive_events() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let entries = vec![
            (at(0), "a: agent up".to_owned()),
            (at(100), "a: agent erase_devices".to_owned()),
            (at(50), "b: agent up".to_owned()),
            (at(450), "b: agent erase_devices".to_owned()),
            (at(600), "a: agent erase_devices done".to_owned()),
            (at(700), "not a machine event".to_owned()),
        ];
        let gaps = timeline(&entries, t0);
        assert_eq!(gaps.len(), 2, "{gaps:?}");
        assert_eq!(
            (gaps[0].from.as_str(), gaps[0].to.as_str()),
            ("agent up", "agent erase_devices")
        );
        assert_eq!((gaps[0].count, gaps[0].max_s), (2, 0.4));
        assert_eq!((gaps[1].to.as_str(), gaps[1].p50_s), ("agent erase_devices done", 0.5));
        assert!(
            timeline(&entries, at(1000)).is_empty(),
            "events before `since` are left out"
        );
    }

    #[test]
    fn this_process_has_memory_and_cpu_time() {
        let pid = std::process::id();
        assert!(proc_kib(pid, "VmHWM:").is_some_and(|kib| kib > 0));
        assert!(cpu_seconds(pid).is_some());
        assert_eq!(process_tree(pid)[0], pid);
        assert!(tree_peak_rss_kib(pid) >= proc_kib(pid, "VmHWM:").unwrap_or(0));
        assert!(tree_cpu_seconds(pid) >= cpu_seconds(pid).unwrap_or(0.0));
    }
}
