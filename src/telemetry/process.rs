//! The process's own health, read from `/proc` at each scrape under the names Prometheus client
//! libraries use (`process_*`), so dashboards and alerts written for them work unchanged.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

#[derive(Debug, Default)]
pub struct ProcessCollector;

/// What `/proc/self` says, in the units of the metrics.
#[derive(Debug, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_memory_bytes: f64,
    pub virtual_memory_bytes: f64,
    pub start_time_seconds: f64,
    pub open_fds: f64,
    pub max_fds: f64,
}

impl ProcessStats {
    /// `None` where `/proc` cannot be read (not Linux): the metrics are then left out.
    pub fn read() -> Option<ProcessStats> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()?
            .lines()
            .find_map(|line| line.strip_prefix("btime "))?
            .trim()
            .parse::<f64>()
            .ok()?;
        // SAFETY: sysconf and getrlimit only read process-wide settings.
        let (ticks, page_size, max_fds) = unsafe {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            let max_fds = if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
                limit.rlim_cur as f64
            } else {
                0.0
            };
            (
                libc::sysconf(libc::_SC_CLK_TCK) as f64,
                libc::sysconf(libc::_SC_PAGESIZE) as f64,
                max_fds,
            )
        };
        let open_fds = std::fs::read_dir("/proc/self/fd").ok()?.count() as f64;
        parse_stat(&stat, ticks, page_size, boot_time).map(|stats| ProcessStats {
            open_fds,
            max_fds,
            ..stats
        })
    }
}

/// The fields of `/proc/self/stat` after the command name (which may hold spaces and
/// parentheses, so the split is at its last `)`).
fn parse_stat(stat: &str, ticks: f64, page_size: f64, boot_time: f64) -> Option<ProcessStats> {
    if ticks <= 0.0 {
        return None;
    }
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Numbered as in proc(5) from field 3 (state), so field N is at index N - 3.
    let field = |n: usize| fields.get(n - 3)?.parse::<f64>().ok();
    Some(ProcessStats {
        cpu_seconds: (field(14)? + field(15)?) / ticks,
        start_time_seconds: boot_time + field(22)? / ticks,
        virtual_memory_bytes: field(23)?,
        resident_memory_bytes: field(24)? * page_size,
        ..ProcessStats::default()
    })
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = ProcessStats::read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        for (name, help, value) in [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                stats.resident_memory_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                stats.virtual_memory_bytes,
            ),
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch in seconds",
                stats.start_time_seconds,
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stats.max_fds,
            ),
        ] {
            let gauge = ConstGauge::new(value);
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stat_line_is_split_after_the_last_parenthesis_of_the_name() {
        // pid (comm) state ppid ... utime=14 stime=15 ... starttime=22 vsize=23 rss=24
        let mut fields: Vec<String> = (3..=30).map(|n| n.to_string()).collect();
        fields[0] = "S".to_owned();
        fields[14 - 3] = "250".to_owned();
        fields[15 - 3] = "50".to_owned();
        fields[22 - 3] = "1000".to_owned();
        fields[23 - 3] = "8192000".to_owned();
        fields[24 - 3] = "300".to_owned();
        let line = format!("42 (a) (b c) {}", fields.join(" "));
        let stats = parse_stat(&line, 100.0, 4096.0, 1_700_000_000.0).expect("parsed");
        assert_eq!(stats.cpu_seconds, 3.0);
        assert_eq!(stats.start_time_seconds, 1_700_000_010.0);
        assert_eq!(stats.virtual_memory_bytes, 8_192_000.0);
        assert_eq!(stats.resident_memory_bytes, 300.0 * 4096.0);
    }

    #[test]
    fn this_process_reads_as_alive() {
        let stats = ProcessStats::read().expect("/proc is readable on Linux");
        assert!(stats.resident_memory_bytes > 1_000_000.0, "{stats:?}");
        assert!(stats.open_fds >= 3.0 && stats.max_fds >= stats.open_fds);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after the epoch")
            .as_secs_f64();
        assert!(stats.start_time_seconds <= now + 1.0 && stats.start_time_seconds > now - 86_400.0);
    }
}
