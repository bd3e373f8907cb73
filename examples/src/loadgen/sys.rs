//! What the load generator reads about the process from Linux's `/proc`: per-thread CPU time,
//! resident memory, load average. No `unsafe`: everything comes from files.

use std::fs;
use std::time::Duration;

/// Clock ticks per second of `/proc/*/stat` (`USER_HZ`; 100 on every mainstream Linux build).
const USER_HZ: u64 = 100;

/// A thread's CPU time at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    /// Time on CPU, from `schedstat` (nanosecond resolution), or user + system ticks if the
    /// kernel has no schedstat.
    pub on_cpu: Duration,
    /// User time (10 ms ticks).
    pub user: Duration,
    /// System time (10 ms ticks).
    pub system: Duration,
}

impl CpuTimes {
    /// The time spent between `earlier` and `self`.
    pub fn since(&self, earlier: &CpuTimes) -> CpuTimes {
        CpuTimes {
            on_cpu: self.on_cpu.saturating_sub(earlier.on_cpu),
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

impl CpuTimes {
    /// The two times added (two threads' together).
    pub fn plus(&self, other: &CpuTimes) -> CpuTimes {
        CpuTimes {
            on_cpu: self.on_cpu + other.on_cpu,
            user: self.user + other.user,
            system: self.system + other.system,
        }
    }
}

/// Pins thread `tid` of this process to CPU `cpu` (through `taskset`, which util-linux
/// installs on every mainstream distribution).
pub fn pin_thread(tid: u32, cpu: usize) -> std::io::Result<()> {
    pin_thread_to(tid, &[cpu])
}

/// Lets thread `tid` of this process run on the CPUs `cpus` only.
pub fn pin_thread_to(tid: u32, cpus: &[usize]) -> std::io::Result<()> {
    let list: Vec<String> = cpus.iter().map(usize::to_string).collect();
    let status = std::process::Command::new("taskset")
        .args(["-pc", &list.join(","), &tid.to_string()])
        .stdout(std::process::Stdio::null())
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(std::io::Error::other(format!(
            "taskset -pc {list:?} {tid} failed"
        )))
    }
}

/// The CPU times of thread `tid` of this process.
pub fn thread_cpu(tid: u32) -> Option<CpuTimes> {
    let stat = fs::read_to_string(format!("/proc/self/task/{tid}/stat")).ok()?;
    let (user, system) = parse_stat_times(&stat)?;
    let on_cpu = fs::read_to_string(format!("/proc/self/task/{tid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .map(Duration::from_nanos)
        .unwrap_or(user + system);
    Some(CpuTimes {
        on_cpu,
        user,
        system,
    })
}

/// A thread's involuntary context switches (times the scheduler took its CPU away while it
/// could still run: on a shared machine, other processes' turns).
pub fn thread_preemptions(tid: u32) -> u64 {
    fs::read_to_string(format!("/proc/self/task/{tid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("nonvoluntary_ctxt_switches:"))?
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// The whole process's user + system time.
pub fn process_cpu() -> Option<CpuTimes> {
    let stat = fs::read_to_string("/proc/self/stat").ok()?;
    let (user, system) = parse_stat_times(&stat)?;
    Some(CpuTimes {
        on_cpu: user + system,
        user,
        system,
    })
}

fn parse_stat_times(stat: &str) -> Option<(Duration, Duration)> {
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3 of the full line, utime 14, stime 15.
    let ticks = |i: usize| -> Option<Duration> {
        let t: u64 = fields.get(i - 3)?.parse().ok()?;
        Some(Duration::from_millis(t * 1000 / USER_HZ))
    };
    Some((ticks(14)?, ticks(15)?))
}

/// The ids of this process's threads.
pub fn thread_ids() -> Vec<u32> {
    fs::read_dir("/proc/self/task")
        .map(|d| {
            d.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// A thread's name.
pub fn thread_name(tid: u32) -> Option<String> {
    fs::read_to_string(format!("/proc/self/task/{tid}/comm"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The id of the calling thread.
pub fn current_tid() -> Option<u32> {
    let link = fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

/// Resident set size of the process, in bytes.
pub fn rss_bytes() -> u64 {
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))?
                .split_whitespace()
                .nth(1)?
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// The 1-minute load average, as the kernel reports it.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// How busy each CPU was over `window` (0.0 idle .. 1.0 busy), from `/proc/stat`, by CPU
/// number. Taken before the run starts, this is the load of other processes.
pub fn cpu_busy(window: Duration) -> Vec<(usize, f64)> {
    fn read() -> Vec<(usize, u64, u64)> {
        let Ok(stat) = fs::read_to_string("/proc/stat") else {
            return Vec::new();
        };
        stat.lines()
            .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
            .filter_map(|l| {
                let mut f = l.split_whitespace();
                let id: usize = f.next()?.strip_prefix("cpu")?.parse().ok()?;
                let v: Vec<u64> = f.filter_map(|x| x.parse().ok()).collect();
                let idle = v.get(3)? + v.get(4).copied().unwrap_or(0);
                Some((id, v.iter().take(8).sum(), idle))
            })
            .collect()
    }
    let a = read();
    std::thread::sleep(window);
    let b = read();
    a.iter()
        .zip(&b)
        .map(|((id, t0, i0), (_, t1, i1))| {
            let total = t1.saturating_sub(*t0).max(1) as f64;
            (*id, 1.0 - i1.saturating_sub(*i0) as f64 / total)
        })
        .collect()
}

/// The CPU model name.
pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// The kernel's count of UDP datagrams dropped for a full receive buffer.
pub fn udp_rcvbuf_errors() -> u64 {
    let Ok(snmp) = fs::read_to_string("/proc/net/snmp") else {
        return 0;
    };
    let mut lines = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let (Some(names), Some(values)) = (lines.next(), lines.next()) else {
        return 0;
    };
    names
        .split_whitespace()
        .position(|n| n == "RcvbufErrors")
        .and_then(|i| values.split_whitespace().nth(i)?.parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_after_a_name_with_spaces() {
        let line = "42 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0";
        let (u, s) = parse_stat_times(line).unwrap();
        assert_eq!(u, Duration::from_millis(2500));
        assert_eq!(s, Duration::from_millis(300));
    }

    #[test]
    fn this_thread_is_found() {
        let tid = current_tid().unwrap();
        assert!(thread_ids().contains(&tid));
        assert!(thread_cpu(tid).is_some());
        assert!(rss_bytes() > 0);
    }
}
