//! Per-plugin counters: calls by outcome, host calls by interface (allowed
//! or denied), and latency histograms of calls and of instantiation. Plain
//! atomics, read by [`crate::PluginHost::stats`].

use std::{
    collections::BTreeMap,
    sync::atomic::{AtomicU64, Ordering::Relaxed},
    time::Duration,
};

use serde::Serialize;

use crate::manifest::{PluginId, Resource};

/// How a call into a plugin ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok,
    Trap,
    Timeout,
    MemoryLimit,
    Busy,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    calls: AtomicU64,
    ok: AtomicU64,
    traps: AtomicU64,
    timeouts: AtomicU64,
    memory_limits: AtomicU64,
    busy: AtomicU64,
    call_nanos: AtomicU64,
    host: [[AtomicU64; 2]; Resource::ALL.len()],
    /// Successful calls, start (slot wait included) to answer.
    latency: Histogram,
    /// Creating the instance (store + `InstancePre::instantiate`).
    instantiate: Histogram,
    fetch_ok: AtomicU64,
    fetch_failed: AtomicU64,
    fetch_bytes: AtomicU64,
}

impl Counters {
    pub(crate) fn call(&self, outcome: Outcome, took: Duration) {
        self.calls.fetch_add(1, Relaxed);
        self.call_nanos
            .fetch_add(u64::try_from(took.as_nanos()).unwrap_or(u64::MAX), Relaxed);
        let c = match outcome {
            Outcome::Ok => &self.ok,
            Outcome::Trap => &self.traps,
            Outcome::Timeout => &self.timeouts,
            Outcome::MemoryLimit => &self.memory_limits,
            Outcome::Busy => &self.busy,
        };
        c.fetch_add(1, Relaxed);
        if outcome == Outcome::Ok {
            self.latency.record(took);
        }
    }

    pub(crate) fn instantiated(&self, took: Duration) {
        self.instantiate.record(took);
    }

    pub(crate) fn host_call(&self, interface: Resource, allowed: bool) {
        self.host[interface as usize][usize::from(!allowed)].fetch_add(1, Relaxed);
    }

    /// An allowed `http.fetch` ended: with a response of `bytes` body
    /// bytes, or failed (`None`: network, time limit, size limit).
    pub(crate) fn fetch(&self, bytes: Option<usize>) {
        match bytes {
            Some(n) => {
                self.fetch_ok.fetch_add(1, Relaxed);
                self.fetch_bytes.fetch_add(n as u64, Relaxed);
            }
            None => {
                self.fetch_failed.fetch_add(1, Relaxed);
            }
        }
    }

    pub(crate) fn snapshot(&self, plugin: &PluginId) -> PluginStats {
        let host_calls = Resource::ALL
            .into_iter()
            .filter_map(|r| {
                let [a, d] = &self.host[r as usize];
                let counts = HostCallCounts {
                    allowed: a.load(Relaxed),
                    denied: d.load(Relaxed),
                };
                (counts.allowed + counts.denied > 0).then(|| (r.as_str().to_owned(), counts))
            })
            .collect();
        PluginStats {
            plugin: plugin.clone(),
            calls: self.calls.load(Relaxed),
            ok: self.ok.load(Relaxed),
            traps: self.traps.load(Relaxed),
            timeouts: self.timeouts.load(Relaxed),
            memory_limits: self.memory_limits.load(Relaxed),
            busy: self.busy.load(Relaxed),
            call_time: Duration::from_nanos(self.call_nanos.load(Relaxed)),
            latency: self.latency.summary(),
            instantiate: self.instantiate.summary(),
            host_calls,
            fetches: FetchCounts {
                ok: self.fetch_ok.load(Relaxed),
                failed: self.fetch_failed.load(Relaxed),
                bytes_received: self.fetch_bytes.load(Relaxed),
            },
        }
    }
}

/// Outgoing HTTP requests (`http.fetch`) the grants allowed, by outcome.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FetchCounts {
    /// Fetches that got a response (any status).
    pub ok: u64,
    /// Fetches that failed: network errors, the time limit, a response over
    /// the size limit, a refused request.
    pub failed: u64,
    /// Response body bytes received by the fetches that got a response.
    pub bytes_received: u64,
}

/// Host calls of one interface.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct HostCallCounts {
    /// Calls the grants allowed.
    pub allowed: u64,
    /// Calls refused (each is in the audit log, up to the per-call cap).
    pub denied: u64,
}

/// A plugin's counters since it was loaded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PluginStats {
    /// The plugin.
    pub plugin: PluginId,
    /// Calls into the plugin (`handle`, `on-record`, `tick`).
    pub calls: u64,
    /// Calls that returned normally.
    pub ok: u64,
    /// Calls that trapped (panics, `unreachable`, bad host-call arguments).
    pub traps: u64,
    /// Calls stopped at the time limit.
    pub timeouts: u64,
    /// Calls stopped at the memory cap.
    pub memory_limits: u64,
    /// Calls refused because no instance slot came free in time.
    pub busy: u64,
    /// Time spent in calls, in all.
    pub call_time: Duration,
    /// Latency of the calls that succeeded (waiting for a slot, a fresh
    /// instance, the export).
    pub latency: LatencySummary,
    /// Time to create the fresh instance each call runs in.
    pub instantiate: LatencySummary,
    /// Host calls by interface (`records`, `kv`, …); interfaces never called
    /// are left out.
    pub host_calls: BTreeMap<String, HostCallCounts>,
    /// Outgoing HTTP requests that were allowed, by outcome.
    pub fetches: FetchCounts,
}

/// Quantiles of a latency histogram, in microseconds. Each is the upper
/// bound of its histogram bucket: at most 1/8 (12.5 %) above the true value.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct LatencySummary {
    /// Samples recorded.
    pub count: u64,
    /// Median.
    pub p50_us: u64,
    /// 90th percentile.
    pub p90_us: u64,
    /// 99th percentile.
    pub p99_us: u64,
    /// The largest sample's bucket.
    pub max_us: u64,
}

/// Sub-buckets per power of two: the relative error of a quantile.
const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
/// Powers of two covered above 1 µs: up to 2^36 µs (~19 h); larger samples
/// land in the last bucket.
const POWERS: usize = 37;
const BUCKETS: usize = SUB * POWERS;

/// A log-linear histogram of durations in microseconds with atomic buckets:
/// recording is one `fetch_add`, no lock, fixed memory (2.4 KiB).
/// Bucket `b < SUB` holds exactly `b` µs; above, each power of two is split
/// into `SUB` equal parts.
pub(crate) struct Histogram {
    buckets: Box<[AtomicU64; BUCKETS]>,
}

impl Default for Histogram {
    fn default() -> Self {
        Self {
            buckets: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
        }
    }
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Histogram").field(&self.summary()).finish()
    }
}

impl Histogram {
    pub(crate) fn record(&self, took: Duration) {
        let us = u64::try_from(took.as_micros()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(us)].fetch_add(1, Relaxed);
    }

    pub(crate) fn summary(&self) -> LatencySummary {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let count: u64 = counts.iter().sum();
        if count == 0 {
            return LatencySummary::default();
        }
        let quantile = |q: f64| {
            // The smallest bucket whose cumulative count reaches q·count.
            let rank = ((q * count as f64).ceil() as u64).clamp(1, count);
            let mut seen = 0;
            for (b, &n) in counts.iter().enumerate() {
                seen += n;
                if seen >= rank {
                    return upper_bound(b);
                }
            }
            upper_bound(BUCKETS - 1)
        };
        let max = counts.iter().rposition(|&n| n > 0).map_or(0, upper_bound);
        LatencySummary {
            count,
            p50_us: quantile(0.50),
            p90_us: quantile(0.90),
            p99_us: quantile(0.99),
            max_us: max,
        }
    }
}

fn bucket_of(us: u64) -> usize {
    if us < SUB as u64 {
        return us as usize;
    }
    let power = 63 - us.leading_zeros(); // ≥ SUB_BITS
    let sub = (us >> (power - SUB_BITS)) as usize & (SUB - 1);
    let b = (power - SUB_BITS + 1) as usize * SUB + sub;
    b.min(BUCKETS - 1)
}

/// The largest value that lands in bucket `b`.
fn upper_bound(b: usize) -> u64 {
    if b < SUB {
        return b as u64;
    }
    let power = (b / SUB) as u32 + SUB_BITS - 1;
    let sub = (b % SUB) as u64;
    let width = 1u64 << (power - SUB_BITS);
    (1u64 << power) + (sub + 1) * width - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_are_contiguous_and_bounds_are_tight() {
        // Every value lands in a bucket whose upper bound is ≥ it and within
        // 12.5 % of it; bucket upper bounds increase by one bucket at a time.
        for us in (0..100_000u64).chain([1 << 20, (1 << 30) + 12345, 1 << 36]) {
            let b = bucket_of(us);
            let hi = upper_bound(b);
            assert!(hi >= us, "{us} µs in bucket {b} with bound {hi}");
            assert!(hi - us <= us / SUB as u64, "{us} µs: bound {hi} too loose");
            if b > 0 {
                assert!(
                    upper_bound(b - 1) < us,
                    "{us} µs belongs in an earlier bucket"
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_of_a_known_distribution() {
        let h = Histogram::default();
        assert_eq!(h.summary(), LatencySummary::default());
        // 1..=1000 µs once each: p50 ≈ 500, p90 ≈ 900, p99 ≈ 990.
        for us in 1..=1000 {
            h.record(Duration::from_micros(us));
        }
        let s = h.summary();
        assert_eq!(s.count, 1000);
        for (got, want) in [
            (s.p50_us, 500),
            (s.p90_us, 900),
            (s.p99_us, 990),
            (s.max_us, 1000),
        ] {
            assert!(got >= want && got <= want + want / 8, "{s:?}");
        }
        // One huge outlier moves the max, not the median.
        h.record(Duration::from_secs(3600));
        let s = h.summary();
        assert!(s.p50_us <= 563 && s.max_us >= 3_600_000_000, "{s:?}");
    }
}
