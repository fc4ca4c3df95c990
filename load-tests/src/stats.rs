//! Percentiles, the server's memory and CPU from `/proc`, and the report (markdown and JSON).

use std::time::{Duration, Instant};

use serde::Serialize;

/// Latency summary of a run.
#[derive(Debug, PartialEq, Clone, Copy)]
pub struct Summary {
    pub p50: Duration,
    pub p95: Duration,
    pub p99: Duration,
    pub max: Duration,
}

/// Nearest-rank percentiles of the samples (sorted in place).
pub fn summarize(samples: &mut [Duration]) -> Option<Summary> {
    if samples.is_empty() {
        return None;
    }
    samples.sort_unstable();
    let rank = |p: f64| {
        let idx = ((p / 100.0) * samples.len() as f64).ceil() as usize;
        samples[idx.clamp(1, samples.len()) - 1]
    };
    Some(Summary {
        p50: rank(50.0),
        p95: rank(95.0),
        p99: rank(99.0),
        max: samples[samples.len() - 1],
    })
}

/// Latency percentiles in milliseconds, for the JSON report.
#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct LatencyMs {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl std::fmt::Display for LatencyMs {
    /// `p50 1.20 ms, p95 3.40 ms, p99 5.60 ms, max 7.80 ms`, as the markdown reports show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            self.p50, self.p95, self.p99, self.max
        )
    }
}

impl From<Summary> for LatencyMs {
    fn from(s: Summary) -> Self {
        let ms = |d: Duration| (d.as_secs_f64() * 1e5).round() / 100.0;
        LatencyMs {
            p50: ms(s.p50),
            p95: ms(s.p95),
            p99: ms(s.p99),
            max: ms(s.max),
        }
    }
}

/// Resident memory of a process in KiB (`VmRSS` of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    parse_vm_rss(&status)
}

fn parse_vm_rss(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
}

/// Kernel clock ticks per second (`USER_HZ`), 100 on every Linux architecture we run on.
const CLOCK_TICKS: f64 = 100.0;

/// CPU time (user + system) a process has used, in seconds (`/proc/<pid>/stat`).
pub fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_cpu_ticks(&stat).map(|t| t as f64 / CLOCK_TICKS)
}

fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: count from the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, field 3 (state) is index 0; utime (14) and stime (15) are 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// A point reading of the server process.
#[derive(Debug, Clone, Copy)]
pub struct ServerSample {
    pub at: Instant,
    pub rss_kib: Option<u64>,
    pub cpu_secs: Option<f64>,
}

/// Watches the server process given with `--server-pid` (or nothing).
#[derive(Debug, Clone, Copy)]
pub struct ServerProbe {
    pub pid: Option<u32>,
}

impl ServerProbe {
    pub fn sample(&self) -> ServerSample {
        ServerSample {
            at: Instant::now(),
            rss_kib: self.pid.and_then(rss_kib),
            cpu_secs: self.pid.and_then(cpu_secs),
        }
    }
}

/// Server CPU use between two samples, in percent of one core.
pub fn cpu_percent(from: &ServerSample, to: &ServerSample) -> Option<f64> {
    let wall = to.at.duration_since(from.at).as_secs_f64();
    match (from.cpu_secs, to.cpu_secs) {
        (Some(a), Some(b)) if wall > 0.0 => Some((b - a) / wall * 100.0),
        _ => None,
    }
}

/// `123.4 MiB` or `n/a`.
pub fn mib(kib: Option<u64>) -> String {
    kib.map_or_else(|| "n/a".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0))
}

/// `85 %` or `n/a`.
pub fn pct(p: Option<f64>) -> String {
    p.map_or_else(|| "n/a".into(), |p| format!("{p:.0} %"))
}

/// The server's memory and CPU over a run, and the load generator's CPU, as reports give them.
#[derive(Debug, Serialize, Clone, Copy, Default)]
pub struct ServerUse {
    pub server_pid: Option<u32>,
    pub server_rss_before_kib: Option<u64>,
    pub server_rss_peak_kib: Option<u64>,
    pub server_rss_after_kib: Option<u64>,
    pub server_cpu_percent: Option<f64>,
    pub server_cpu_percent_peak: Option<f64>,
    pub client_cpu_percent: Option<f64>,
}

impl ServerUse {
    /// From the samples of a run: before it, at the end of its window, after it (RSS only);
    /// the peak CPU second and RSS seen by its progress line; the load generator's own CPU.
    pub fn between(
        pid: Option<u32>,
        (before, window_end, after): (&ServerSample, &ServerSample, &ServerSample),
        (peak_cpu, peak_rss): (Option<f64>, Option<u64>),
        (client_before, client_end): (&ServerSample, &ServerSample),
    ) -> ServerUse {
        ServerUse {
            server_pid: pid,
            server_rss_before_kib: before.rss_kib,
            server_rss_peak_kib: peak_rss.max(window_end.rss_kib),
            server_rss_after_kib: after.rss_kib,
            server_cpu_percent: cpu_percent(before, window_end),
            server_cpu_percent_peak: peak_cpu,
            client_cpu_percent: cpu_percent(client_before, client_end),
        }
    }

    /// The last rows of a markdown report.
    pub fn print_rows(&self) {
        println!(
            "| server RSS before / peak / after | {} / {} / {} |",
            mib(self.server_rss_before_kib),
            mib(self.server_rss_peak_kib),
            mib(self.server_rss_after_kib)
        );
        println!(
            "| server CPU (100 % = one core) average / peak second | {} / {} |",
            pct(self.server_cpu_percent),
            pct(self.server_cpu_percent_peak)
        );
        println!(
            "| load generator CPU (same machine) | {} |",
            pct(self.client_cpu_percent)
        );
    }
}

/// Prints a report as markdown, also writes it as JSON when asked, and hands it back.
pub fn publish<T: Serialize>(
    report: T,
    print_markdown: fn(&T),
    json: Option<&std::path::Path>,
) -> anyhow::Result<T> {
    print_markdown(&report);
    if let Some(path) = json {
        write_json(path, &report)?;
    }
    Ok(report)
}

/// Writes the report as pretty JSON.
pub fn write_json<T: Serialize>(path: &std::path::Path, report: &T) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(report)?;
    std::fs::write(path, text + "\n")?;
    eprintln!("report written to {}", path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<Duration> = (1..=100).rev().map(Duration::from_millis).collect();
        let s = summarize(&mut samples).expect("samples");
        assert_eq!(s.p50, Duration::from_millis(50));
        assert_eq!(s.p95, Duration::from_millis(95));
        assert_eq!(s.p99, Duration::from_millis(99));
        assert_eq!(s.max, Duration::from_millis(100));
        assert_eq!(summarize(&mut []), None);
        let mut one = [Duration::from_millis(7)];
        let s = summarize(&mut one).expect("one sample");
        assert_eq!((s.p50, s.p99, s.max), (one[0], one[0], one[0]));
    }

    #[test]
    fn proc_files_are_read() {
        let status = "Name:\tvigil\nVmPeak:\t  900 kB\nVmRSS:\t   12345 kB\nThreads: 3\n";
        assert_eq!(parse_vm_rss(status), Some(12345));
        let stat = "4242 (vigil (x) y) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        // This process exists and uses memory.
        assert!(rss_kib(std::process::id()).is_some_and(|k| k > 0));
        assert!(cpu_secs(std::process::id()).is_some());
    }

    #[test]
    fn cpu_percent_is_per_core() {
        let t = Instant::now();
        let a = ServerSample {
            at: t,
            rss_kib: None,
            cpu_secs: Some(1.0),
        };
        let b = ServerSample {
            at: t + Duration::from_secs(2),
            rss_kib: None,
            cpu_secs: Some(4.0),
        };
        assert_eq!(cpu_percent(&a, &b).map(|p| p.round()), Some(150.0));
    }
}
