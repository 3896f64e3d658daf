//! CPU time of a process, read from `/proc/PID/stat` (utime + stime, in clock ticks of 10 ms, the
//! Linux USER_HZ). With the server pinned to one core, its CPU per request is the figure that
//! does not depend on whether the load generator kept up.

use std::time::{Duration, Instant};

/// CPU time (user + system) of `pid`, or of this process when `None`.
pub fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/stat"),
        None => "/proc/self/stat".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    // The command name (field 2) may contain spaces; the fields after it are space-separated.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // After the name: state is field 3, utime field 14, stime field 15 (1-based).
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(Duration::from_millis((utime + stime) * 10))
}

/// Resident set size of `pid` (or this process) in bytes, from `/proc/PID/status`.
pub fn rss_bytes(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_owned(),
    };
    let text = std::fs::read_to_string(path).ok()?;
    let line = text.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// CPU use of a process over an interval.
pub struct CpuWindow {
    pid: Option<u32>,
    start_cpu: Duration,
    start: Instant,
}

impl CpuWindow {
    pub fn start(pid: Option<u32>) -> Option<Self> {
        Some(Self {
            pid,
            start_cpu: cpu_time(pid)?,
            start: Instant::now(),
        })
    }

    /// (CPU time used, wall time elapsed).
    pub fn finish(&self) -> Option<(Duration, Duration)> {
        let cpu = cpu_time(self.pid)?.saturating_sub(self.start_cpu);
        Some((cpu, self.start.elapsed()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_cpu_and_rss() {
        // Process-wide figures: other test threads run too, so only sanity is checked.
        let w = CpuWindow::start(None).unwrap();
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let (_cpu, wall) = w.finish().unwrap();
        assert!(wall > Duration::ZERO);
        assert!(cpu_time(None).unwrap() >= w.start_cpu);
        assert!(rss_bytes(None).unwrap() > 0);
        assert!(cpu_time(Some(u32::MAX)).is_none(), "no such process");
    }
}
