//! What produced a figure: the machine (CPU, cores, memory, kernel, disk of the data dir), the git
//! revision, the time, and this process's CPU use (getrusage).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;

#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub hostname: String,
    pub cpu_model: String,
    pub logical_cpus: usize,
    pub memory_bytes: u64,
    pub kernel: String,
    /// /proc/loadavg when the record was made: other load on the machine skews figures.
    pub loadavg: String,
    pub disk: Option<Disk>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Disk {
    /// The directory the disk was looked up for.
    pub path: String,
    pub source: String,
    pub fs_type: String,
    pub size_bytes: u64,
    pub block_device: Option<String>,
    pub model: Option<String>,
    pub rotational: Option<bool>,
}

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
}

fn run(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

pub fn machine(data_dir: Option<&Path>) -> Machine {
    let cpuinfo = read("/proc/cpuinfo").unwrap_or_default();
    let cpu_model = cpuinfo
        .lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split(':').nth(1))
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|| "unknown".into());
    let memory_bytes = read("/proc/meminfo")
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<u64>().ok())
        })
        .map(|kb| kb * 1024)
        .unwrap_or(0);
    Machine {
        hostname: read("/proc/sys/kernel/hostname").unwrap_or_default(),
        cpu_model,
        logical_cpus: std::thread::available_parallelism().map_or(0, |n| n.get()),
        memory_bytes,
        kernel: read("/proc/sys/kernel/osrelease").unwrap_or_default(),
        loadavg: read("/proc/loadavg").unwrap_or_default(),
        disk: disk(data_dir.unwrap_or(Path::new("."))),
    }
}

/// The filesystem holding `path` (via `df`) and, when it is a block device, its model and
/// whether it rotates (from /sys/block).
pub fn disk(path: &Path) -> Option<Disk> {
    let p = path.to_string_lossy();
    let out = run("df", &["-P", "-B1", "--output=source,fstype,size", &p])?;
    let line = out.lines().nth(1)?;
    let mut f = line.split_whitespace();
    let (source, fs_type, size) = (f.next()?, f.next()?, f.next()?);
    let dev = source.strip_prefix("/dev/").map(block_parent);
    let model = dev
        .as_ref()
        .and_then(|d| read(&format!("/sys/block/{d}/device/model")));
    let rotational = dev
        .as_ref()
        .and_then(|d| read(&format!("/sys/block/{d}/queue/rotational")))
        .map(|r| r == "1");
    Some(Disk {
        path: std::fs::canonicalize(path).map_or(p.to_string(), |c| c.display().to_string()),
        source: source.to_string(),
        fs_type: fs_type.to_string(),
        size_bytes: size.parse().unwrap_or(0),
        block_device: dev,
        model,
        rotational,
    })
}

/// `nvme0n1p2` → `nvme0n1`, `sda1` → `sda`, via /sys/class/block/<part>/.. when it exists.
fn block_parent(part: &str) -> String {
    let link = format!("/sys/class/block/{part}/partition");
    if Path::new(&link).exists()
        && let Ok(real) = std::fs::canonicalize(format!("/sys/class/block/{part}/.."))
        && let Some(name) = real.file_name()
    {
        return name.to_string_lossy().into_owned();
    }
    part.to_string()
}

#[derive(Debug, Clone, Serialize)]
pub struct GitRev {
    pub commit: String,
    pub dirty: bool,
}

/// The git revision of the working directory, if it is a checkout.
pub fn git_rev() -> Option<GitRev> {
    let commit = run("git", &["rev-parse", "HEAD"])?;
    let status = run("git", &["status", "--porcelain", "--untracked-files=no"]).unwrap_or_default();
    Some(GitRev {
        commit,
        dirty: !status.is_empty(),
    })
}

/// Seconds since the epoch now.
pub fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

/// `2026-11-24T03:21:35Z` for a time since the epoch.
pub fn utc_timestamp(t: Duration) -> String {
    let secs = t.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// User and system CPU time of this process so far.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTimes {
    pub user: Duration,
    pub sys: Duration,
}

pub fn cpu_times() -> CpuTimes {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a complete rusage into the pointer we own; RUSAGE_SELF is valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr()) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) cannot fail");
    // SAFETY: initialised by the successful call above (and zeroed before).
    let ru = unsafe { ru.assume_init() };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    CpuTimes {
        user: tv(ru.ru_utime),
        sys: tv(ru.ru_stime),
    }
}

/// User + system CPU time of process `pid` so far (from /proc/<pid>/stat), if readable.
pub fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) start at state, field 3.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| Duration::from_secs_f64(ticks as f64 / hz as f64))
}

/// The 1-minute load average.
pub fn load_1min() -> f64 {
    read("/proc/loadavg")
        .and_then(|l| l.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// Writes+fdatasyncs per disk probe.
pub const FSYNC_PROBE_WRITES: usize = 100;

/// Median and 99th percentile of `FSYNC_PROBE_WRITES` 4 KiB append+fdatasync calls in `dir`:
/// what the disk offers a WAL right now (other writers on the machine show up here).
pub fn fsync_probe(dir: &Path) -> std::io::Result<(Duration, Duration)> {
    use std::io::Write;
    let path = dir.join(format!(".fsync-probe-{}", std::process::id()));
    let mut f = std::fs::File::create(&path)?;
    let block = [0x5au8; 4096];
    let mut lat = Vec::with_capacity(FSYNC_PROBE_WRITES);
    for _ in 0..FSYNC_PROBE_WRITES {
        let t = std::time::Instant::now();
        f.write_all(&block)?;
        f.sync_data()?;
        lat.push(t.elapsed());
    }
    drop(f);
    std::fs::remove_file(&path)?;
    lat.sort_unstable();
    Ok((lat[lat.len() / 2], lat[lat.len() * 99 / 100]))
}
