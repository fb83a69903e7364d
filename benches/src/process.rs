//! What this process uses (from `/proc/self`) and what the machine has.

use std::process::Command;

/// A `kB` field of `/proc/self/status` (`VmRSS`, `VmHWM`, ...) in bytes.
pub fn status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|line| {
        let rest = line.strip_prefix(field)?.strip_prefix(':')?;
        let kib: u64 = rest.trim().strip_suffix("kB")?.trim().parse().ok()?;
        Some(kib * 1024)
    })
}

/// Resident set size now, bytes.
pub fn rss() -> u64 {
    status_bytes("VmRSS").unwrap_or(0)
}

/// Peak resident set size of the process so far (`VmHWM`), bytes.
pub fn peak_rss() -> u64 {
    status_bytes("VmHWM").unwrap_or(0)
}

/// Whether the process runs as root (effective uid 0).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("Uid:"))?;
            line.split_whitespace().nth(2).map(|euid| euid == "0")
        })
        .unwrap_or(false)
}

/// Clock ticks per second of `/proc` CPU times.
fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds of process `pid` (`"self"` or a number): user + system, plus its reaped
/// children's when `children` is set.
pub fn cpu_seconds_of(pid: &str, children: bool, ticks_per_sec: f64) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, rest) = stat.rsplit_once(')')?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name, 0-based: ppid 1, utime 11, stime 12, cutime 13, cstime 14.
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok());
    let mut ticks = tick(11)? + tick(12)?;
    if children {
        ticks += tick(13)? + tick(14)?;
    }
    Some(ticks / ticks_per_sec)
}

/// CPU seconds of process `pid` and its reaped children, plus those of its live children
/// (and their reaped children): a server that forks a process per connection.
pub fn tree_cpu_seconds(pid: u32, ticks_per_sec: f64) -> Option<f64> {
    let mut total = cpu_seconds_of(&pid.to_string(), true, ticks_per_sec)?;
    let parent = pid.to_string();
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let name = entry.file_name();
        let Some(child) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1));
        if ppid == Some(parent.as_str()) {
            total += cpu_seconds_of(child, true, ticks_per_sec).unwrap_or(0.0);
        }
    }
    Some(total)
}

/// Reads the CPU time (user + system) the process has used.
#[derive(Debug, Clone, Copy)]
pub struct CpuClock {
    ticks_per_sec: f64,
}

impl CpuClock {
    /// A clock for this machine.
    pub fn new() -> CpuClock {
        CpuClock {
            ticks_per_sec: clock_ticks(),
        }
    }

    /// CPU seconds (user + system, all threads) used so far.
    pub fn seconds(&self) -> f64 {
        cpu_seconds_of("self", false, self.ticks_per_sec).unwrap_or(0.0)
    }

    /// CPU seconds of this process and of its children that have exited (e.g. `psql`).
    pub fn seconds_with_children(&self) -> f64 {
        cpu_seconds_of("self", true, self.ticks_per_sec).unwrap_or(0.0)
    }

    /// CPU seconds of process `pid`'s tree (see [`tree_cpu_seconds`]).
    pub fn tree_seconds(&self, pid: u32) -> Option<f64> {
        tree_cpu_seconds(pid, self.ticks_per_sec)
    }
}

impl Default for CpuClock {
    fn default() -> Self {
        CpuClock::new()
    }
}

/// The machine: cores, RAM, CPU model.
#[derive(Debug, Clone)]
pub struct Machine {
    /// Cores this process may use.
    pub cores: usize,
    /// `MemTotal`, bytes.
    pub ram: u64,
    /// The CPU's model name, when `/proc/cpuinfo` tells.
    pub cpu: String,
}

impl Machine {
    /// Reads `/proc`.
    pub fn detect() -> Machine {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let ram = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|m| {
                let line = m.lines().find(|l| l.starts_with("MemTotal:"))?;
                let kib: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())?;
                Some(kib * 1024)
            })
            .unwrap_or(0);
        let cpu = std::fs::read_to_string("/proc/cpuinfo")
            .ok()
            .and_then(|c| {
                let line = c.lines().find(|l| l.starts_with("model name"))?;
                Some(line.split_once(':')?.1.trim().to_string())
            })
            .unwrap_or_else(|| "unknown CPU".into());
        Machine { cores, ram, cpu }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_its_own_memory_and_cpu() {
        assert!(rss() > 0);
        assert!(peak_rss() >= rss() / 2);
        let clock = CpuClock::new();
        assert!(clock.seconds() >= 0.0);
        assert!(clock.seconds_with_children() >= clock.seconds());
        assert!(clock.tree_seconds(std::process::id()).is_some());
        let (a, b) = (MachineCpu::now(), MachineCpu::now());
        assert!(b.busy_cores_since(&a, 2) >= 0.0);
        assert!(Machine::detect().cores >= 1);
    }
}

/// The whole machine's CPU time (`/proc/stat`), to tell how busy other processes kept it
/// while something was measured.
#[derive(Debug, Clone, Copy)]
pub struct MachineCpu {
    busy: u64,
    total: u64,
}

impl MachineCpu {
    /// The counters now (zeros when `/proc/stat` cannot be read).
    pub fn now() -> MachineCpu {
        let read = || -> Option<MachineCpu> {
            let stat = std::fs::read_to_string("/proc/stat").ok()?;
            let line = stat.lines().find(|l| l.starts_with("cpu "))?;
            // user nice system idle iowait irq softirq steal (guest time is inside user).
            let v: Vec<u64> = line
                .split_whitespace()
                .skip(1)
                .take(8)
                .filter_map(|x| x.parse().ok())
                .collect();
            if v.len() < 8 {
                return None;
            }
            let total: u64 = v.iter().sum();
            let idle = v[3] + v[4];
            Some(MachineCpu {
                busy: total - idle,
                total,
            })
        };
        read().unwrap_or(MachineCpu { busy: 0, total: 0 })
    }

    /// Cores kept busy on average since `earlier`, by every process.
    pub fn busy_cores_since(&self, earlier: &MachineCpu, cores: usize) -> f64 {
        let total = self.total.saturating_sub(earlier.total);
        if total == 0 {
            return 0.0;
        }
        self.busy.saturating_sub(earlier.busy) as f64 / total as f64 * cores as f64
    }
}
