//! The server under test: one started in this process on its own runtime, or a running one
//! named by address; and the meter that reads its CPU time and memory from `/proc`.
//!
//! Hazards: an in-process server shares the process with the load generator. Its CPU time is
//! the sum over its threads (the server runtime's `eb-server` threads, the store's SQLite
//! writer and checkpoint threads and sqlx's `sqlx-sqlite-worker` threads of the read pool), read from `/proc/self/task`, so time of server threads that
//! exited during a measurement is lost (the runtime keeps its threads for a day to avoid that).
//! RSS can only be read for the whole process. With Postgres, the database's own CPU and memory
//! are not counted at all.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use eventbus_engine::store::{CHECKPOINT_THREAD, Durability, Store, StoreConfig, WRITER_THREAD};
use eventbus_server::{Listeners, ServerConfig, serve_store};
use tokio::sync::oneshot;

use super::load::Dial;
use tokio::task::JoinHandle;

/// Name of the in-process server's threads; `/proc` shows at most 15 bytes of it.
const SERVER_THREAD: &str = "eb-server";
/// Prefix of the names sqlx gives its SQLite worker threads (`sqlx-sqlite-worker-N`).
const SQLITE_THREAD: &str = "sqlx-sqlite";
/// `/proc` reports CPU times in clock ticks of `USER_HZ`, which is 100 on every Linux ABI.
const TICKS_PER_SECOND: f64 = 100.0;

/// Where the bench sends its load.
#[derive(Debug)]
pub struct Target {
    /// How the clients connect.
    pub dial: Dial,
    /// The HTTP listener (host:port), for the `http` workload.
    pub http: Option<String>,
    /// What the target is, for the report.
    pub description: TargetInfo,
    pub meter: Meter,
    server: Option<InProcess>,
}

/// What the target is, for the report.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TargetInfo {
    /// `in-process` or `remote`.
    pub kind: &'static str,
    pub addr: String,
    /// Database of an in-process server (credentials removed); `None` for a remote one.
    pub database: Option<String>,
    /// `full` or `relaxed` for an in-process server.
    pub durability: Option<&'static str>,
    /// Process whose CPU and memory are measured, if any.
    pub measured_pid: Option<u32>,
}

#[derive(Debug)]
struct InProcess {
    runtime: tokio::runtime::Runtime,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl Target {
    /// Starts a server in this process on `127.0.0.1:0`, on a runtime of its own, over
    /// `database_url` or a fresh SQLite file in a temp directory.
    pub async fn start(database_url: Option<String>, relaxed: bool) -> anyhow::Result<Self> {
        let (url, dir) = match database_url {
            Some(url) => (url, None),
            None => {
                let dir = tempfile::Builder::new().prefix("eventbus-bench").tempdir().context("creating a temp dir")?;
                let url = format!("sqlite://{}", dir.path().join("bench.db").display());
                (url, Some(dir))
            }
        };
        let mut store_config = StoreConfig::new(url.clone());
        if relaxed {
            store_config.durability = Durability::Relaxed;
        }
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name(SERVER_THREAD)
            .thread_keep_alive(Duration::from_secs(24 * 3600))
            .enable_all()
            .build()
            .context("building the server runtime")?;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
        listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let addr = listener.local_addr().context("reading the bound address")?;
        let http = std::net::TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0 for HTTP")?;
        http.set_nonblocking(true).context("making the HTTP listener non-blocking")?;
        let http_addr = http.local_addr().context("reading the bound HTTP address")?;
        // Opened on the server runtime, so the store's writer and sweeper run on its threads.
        let store = runtime
            .spawn(Store::open(store_config.clone()))
            .await
            .context("opening the store")?
            .with_context(|| format!("opening the store at {}", redact(&url)))?;
        let (shutdown, stop) = oneshot::channel::<()>();
        let config = ServerConfig::new(store_config);
        let task = runtime.spawn(async move {
            let grpc = tokio::net::TcpListener::from_std(listener).context("registering the listener")?;
            let http = Some(tokio::net::TcpListener::from_std(http).context("registering the HTTP listener")?);
            serve_store(Listeners { grpc, http }, store, config, async move {
                let _ = stop.await;
            })
            .await
        });
        Ok(Self {
            dial: Dial { addr: format!("http://{addr}"), tls: None, token: None, publish_call: Default::default() },
            http: Some(http_addr.to_string()),
            description: TargetInfo {
                kind: "in-process",
                addr: addr.to_string(),
                database: Some(redact(&url)),
                durability: Some(if relaxed { "relaxed" } else { "full" }),
                measured_pid: Some(std::process::id()),
            },
            meter: Meter::InProcess,
            server: Some(InProcess { runtime, shutdown, task, _dir: dir }),
        })
    }

    /// Names a running server (and its HTTP listener, if any); with `pid`, its CPU and memory
    /// are read from `/proc/<pid>`.
    pub fn remote(dial: Dial, pid: Option<u32>, http: Option<String>) -> Self {
        Self {
            description: TargetInfo {
                kind: "remote",
                addr: dial.addr.clone(),
                database: None,
                durability: None,
                measured_pid: pid,
            },
            dial,
            http,
            meter: pid.map_or(Meter::None, Meter::Pid),
            server: None,
        }
    }

    /// Stops an in-process server gracefully and removes its temp database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Some(server) = self.server else { return Ok(()) };
        let _ = server.shutdown.send(());
        let served = tokio::time::timeout(Duration::from_secs(10), server.task).await;
        // Dropping a runtime blocks, which async code must not do.
        let runtime = server.runtime;
        tokio::task::spawn_blocking(move || runtime.shutdown_timeout(Duration::from_secs(5)))
            .await
            .context("stopping the server runtime")?;
        match served {
            Ok(joined) => joined.context("server task")?,
            Err(_) => anyhow::bail!("the in-process server did not stop within 10 seconds"),
        }
    }
}

/// Removes a password from a database URL.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

/// How the server's CPU time and memory are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Meter {
    /// The server runs in this process: its threads' CPU time, the process's RSS.
    InProcess,
    /// The server is another process on this machine.
    Pid(u32),
    /// Nothing can be measured.
    None,
}

/// CPU times and memory at one moment.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    /// CPU seconds of the server (its threads, or its process).
    pub server_cpu: Option<f64>,
    /// CPU seconds of this whole process (server and load generator) when in-process.
    pub process_cpu: Option<f64>,
    /// Resident set size of the measured process, bytes.
    pub rss: Option<u64>,
    /// Peak resident set size of the measured process, bytes.
    pub peak_rss: Option<u64>,
    /// Bytes the measured process caused to be written to disk so far (`write_bytes` of
    /// `/proc/<pid>/io`; in-process, the whole process's, though only the server writes).
    pub written: Option<u64>,
    /// Bytes the disk under the SQLite database has written so far, for every process (sectors
    /// written in `/proc/diskstats`, of the device the database file is on).
    pub disk_written: Option<u64>,
    /// Sizes of the SQLite database and WAL files the measured process holds open.
    pub files: Option<DatabaseFiles>,
}

/// Sizes of a SQLite database's files, bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DatabaseFiles {
    pub database_bytes: u64,
    pub wal_bytes: u64,
}

impl Meter {
    pub fn sample(&self) -> Sample {
        let at = Instant::now();
        match *self {
            Meter::InProcess => {
                let dir = Path::new("/proc/self");
                Sample {
                    server_cpu: server_thread_cpu(),
                    process_cpu: process_cpu(&dir.join("stat")),
                    ..Self::process(at, dir)
                }
            }
            Meter::Pid(pid) => {
                let dir = PathBuf::from(format!("/proc/{pid}"));
                Sample { server_cpu: process_cpu(&dir.join("stat")), ..Self::process(at, &dir) }
            }
            Meter::None => Sample {
                at,
                server_cpu: None,
                process_cpu: None,
                rss: None,
                peak_rss: None,
                written: None,
                disk_written: None,
                files: None,
            },
        }
    }

    /// The figures of the process whose `/proc` directory is `dir`, CPU aside.
    fn process(at: Instant, dir: &Path) -> Sample {
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let wal = sqlite_wal(dir);
        Sample {
            at,
            server_cpu: None,
            process_cpu: None,
            rss: parse_status_kb(&status, "VmRSS:"),
            peak_rss: parse_status_kb(&status, "VmHWM:"),
            written: std::fs::read_to_string(dir.join("io")).ok().and_then(|io| parse_io_written(&io)),
            disk_written: wal.as_deref().and_then(disk_written),
            files: wal.as_deref().and_then(sqlite_files),
        }
    }
}

/// Returns `write_bytes` from the text of a `/proc/.../io` file.
fn parse_io_written(io: &str) -> Option<u64> {
    io.lines().find_map(|l| l.strip_prefix("write_bytes:")).and_then(|n| n.trim().parse().ok())
}

/// Finds the SQLite WAL file among the open files of the process whose `/proc` directory is
/// `proc_dir`.
fn sqlite_wal(proc_dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(proc_dir.join("fd"))
        .ok()?
        .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .find(|target| target.to_string_lossy().ends_with(".db-wal"))
}

/// Sizes of a WAL file and its database.
fn sqlite_files(wal: &Path) -> Option<DatabaseFiles> {
    let wal_name = wal.to_string_lossy();
    let database = PathBuf::from(wal_name.strip_suffix("-wal")?);
    Some(DatabaseFiles {
        database_bytes: std::fs::metadata(database).ok()?.len(),
        wal_bytes: std::fs::metadata(wal).map_or(0, |m| m.len()),
    })
}

/// Bytes written so far by the block device `file` is on (`/proc/diskstats`); `None` when the
/// file system has no such device (tmpfs, overlay).
///
/// Beside the process's own `write_bytes`: Linux charges a write there with the whole page-cache
/// folio it dirties, which can be several pages, so that count can exceed what reached the disk.
/// The device's count is what the disk did, for every process on it.
fn disk_written(file: &Path) -> Option<u64> {
    use std::os::unix::fs::MetadataExt;
    let (major, minor) = device_numbers(std::fs::metadata(file).ok()?.dev());
    sectors_written(&std::fs::read_to_string("/proc/diskstats").ok()?, major, minor).map(|s| s * 512)
}

/// The major and minor numbers of a Linux device number (as glibc's `major` and `minor` read it).
fn device_numbers(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Sectors written (the 10th field) of the device `major:minor` in the text of `/proc/diskstats`.
fn sectors_written(diskstats: &str, major: u64, minor: u64) -> Option<u64> {
    diskstats.lines().find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let matches = fields.first()?.parse::<u64>().ok()? == major && fields.get(1)?.parse::<u64>().ok()? == minor;
        if matches { fields.get(9)?.parse().ok() } else { None }
    })
}

/// Returns utime + stime, in seconds, from the text of a `/proc/.../stat` file.
fn stat_cpu_seconds(stat: &str) -> Option<f64> {
    // The command name (field 2) is in parentheses and may contain spaces: split after it.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 / TICKS_PER_SECOND)
}

fn process_cpu(path: &Path) -> Option<f64> {
    stat_cpu_seconds(&std::fs::read_to_string(path).ok()?)
}

/// Sums the CPU time of this process's server threads.
fn server_thread_cpu() -> Option<f64> {
    let mut total = 0.0;
    for entry in std::fs::read_dir("/proc/self/task").ok()? {
        let Ok(entry) = entry else { continue };
        let Ok(comm) = std::fs::read_to_string(entry.path().join("comm")) else { continue };
        if [SERVER_THREAD, SQLITE_THREAD, WRITER_THREAD, CHECKPOINT_THREAD].iter().any(|name| comm.starts_with(name)) {
            total += process_cpu(&entry.path().join("stat")).unwrap_or(0.0);
        }
    }
    Some(total)
}

fn parse_status_kb(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..].trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_parsing() {
        let stat = "1234 (tokio runtime) S 1 1234 1234 0 -1 4194560 2000 0 0 0 250 50 0 0 20 0 9 0 100 1000 200";
        assert_eq!(stat_cpu_seconds(stat), Some(3.0));
        assert_eq!(stat_cpu_seconds("garbage"), None);
        let status = "Name:\teventbus\nVmHWM:\t   2048 kB\nVmRSS:\t   1024 kB\n";
        assert_eq!(parse_status_kb(status, "VmRSS:"), Some(1024 * 1024));
        assert_eq!(parse_status_kb(status, "VmHWM:"), Some(2048 * 1024));
        assert_eq!(parse_status_kb(status, "VmSwap:"), None);
        assert!(Meter::InProcess.sample().process_cpu.is_some());
        let io = "rchar: 10\nwchar: 20\nwrite_bytes: 4096\ncancelled_write_bytes: 0\n";
        assert_eq!(parse_io_written(io), Some(4096));
        assert_eq!(parse_io_written("rchar: 1\n"), None);
    }

    #[test]
    fn disk_counters() {
        // makedev(254, 0), and makedev(259, 257), whose minor number needs the high minor bits.
        assert_eq!(device_numbers(254 << 8), (254, 0));
        assert_eq!(device_numbers((259 << 8) | 1 | (0x100 << 12)), (259, 0x101));
        let diskstats = "   7       0 loop0 10 0 20 0 0 0 0 0 0 0 0 0 0 0 0 0 0\n \
                         254       0 vda 5000 10 80000 900 7000 20 1433092 1200 0 3000 2100 0 0 0 0 0 0\n \
                         254       1 vda1 4000 10 70000 800 6000 20 1000000 1100 0 2900 1900 0 0 0 0 0 0\n";
        assert_eq!(sectors_written(diskstats, 254, 0), Some(1_433_092));
        assert_eq!(sectors_written(diskstats, 254, 1), Some(1_000_000));
        assert_eq!(sectors_written(diskstats, 8, 0), None);
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(redact("postgres://bus:secret@db/bus"), "postgres://bus:***@db/bus");
        assert_eq!(redact("postgres://bus@db/bus"), "postgres://bus@db/bus");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }
}
