//! Finding a Ceph cluster for tests and development: the one `CEPH_CONF`
//! names, or else the throw-away single-node cluster of
//! `../shared/ceph/ceph-up.sh` beside the workspace, started on first use
//! and shared by every test ([`for_test`]). A test that breaks its cluster
//! (stops the OSD) gets a private one instead ([`PrivateCluster`]).
//!
//! Without the Ceph binaries (or in a build without librados) tests skip,
//! saying why, unless `EMBER_REQUIRE_CEPH=1` (as in CI), where that is a
//! failure.

use std::ffi::OsStr;
use std::fs::File;
use std::net::{Ipv4Addr, TcpListener};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use crate::{CephConfig, LINKED};

/// A cluster tests can use.
#[derive(Debug)]
pub struct DevCluster {
    /// Its `ceph.conf` (monitor address, keyring of `client.admin`).
    pub conf: PathBuf,
}

static CLUSTER: OnceLock<Result<DevCluster, String>> = OnceLock::new();

/// The cluster, or `None` (after printing why) when `test` must skip.
/// Panics if `EMBER_REQUIRE_CEPH=1` and there is none, or if the cluster
/// fails to start.
pub fn for_test(test: &str) -> Option<&'static DevCluster> {
    match CLUSTER.get_or_init(find_or_start) {
        Ok(cluster) => Some(cluster),
        Err(why) => skip(test, why),
    }
}

/// `None` after printing why `test` skips; a panic instead under
/// `EMBER_REQUIRE_CEPH=1`.
fn skip<T>(test: &str, why: &str) -> Option<T> {
    if std::env::var("EMBER_REQUIRE_CEPH").is_ok_and(|v| v == "1") {
        panic!("EMBER_REQUIRE_CEPH=1 but no Ceph cluster: {why}");
    }
    println!("{test}: skipped ({why})");
    None
}

impl DevCluster {
    /// The admin user on `pool`, with a short connect timeout.
    pub fn config(&self, pool: &str) -> CephConfig {
        CephConfig::new(&self.conf, "admin", pool).with_connect_timeout(Duration::from_secs(5))
    }

    /// Removes the objects of `pool` whose names start with `prefix`: the
    /// clean-up of a test, so it ignores errors (and never panics).
    pub fn remove_objects(&self, pool: &str, prefix: &str) {
        let Ok(io) = self.config(pool).connect() else {
            return;
        };
        let Ok(listing) = io.list_objects() else {
            return;
        };
        let names: Vec<String> = listing
            .flatten()
            .filter(|n| n.starts_with(prefix))
            .collect();
        for name in names {
            let _ = io.remove(&name);
        }
    }

    /// Runs a Ceph CLI (`rbd`, `rados`, `ceph`) on this cluster and returns
    /// its stdout; panics if it fails (test support).
    pub fn cli(&self, program: &str, args: &[&str]) -> String {
        let output = Command::new(program)
            .args(args)
            .env("CEPH_CONF", &self.conf)
            .env_remove("CEPH_ARGS")
            .env_remove("CEPH_KEYRING")
            .output()
            .unwrap_or_else(|e| panic!("run {program}: {e}"));
        assert!(
            output.status.success(),
            "{program} {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// A private throw-away cluster (1 monitor, 1 manager, 1 BlueStore OSD,
/// no radosgw, pools `volumes` and `backups`) for one test that breaks it
/// (stops the OSD) without disturbing the tests sharing the cluster of
/// [`for_test`]: started by `ceph-up.sh` in its own directory
/// `/tmp/ceph-private-PORT` on its own 100 ports from `PORT` (41500,
/// 41600, …: the first range that is free), stopped and deleted by
/// `ceph-down.sh --wipe` when dropped, panics included.
///
/// A range is held with an exclusive `flock` on `/tmp/ceph-private-PORT.lock`
/// (so test processes running at once never share one), and the directory
/// of a test process that died without clean-up is wiped by the next one
/// to take its range. Starting takes about 30 s and 300–400 MiB of memory.
#[derive(Debug)]
pub struct PrivateCluster {
    cluster: DevCluster,
    dir: PathBuf,
    port: u16,
    lock_path: PathBuf,
    /// Held while the cluster exists; `None` only once dropped.
    lock: Option<Flock<File>>,
}

/// The first port of the first private cluster's range.
const PRIVATE_PORT_BASE: u16 = 41500;
/// Ports per cluster (ceph-up.sh: base+0..+99).
const PRIVATE_PORTS: u16 = 100;
/// How many ranges are tried before giving up.
const PRIVATE_RANGES: u16 = 20;
/// The range this process tries next (ranges other processes hold are
/// skipped by their lock).
static NEXT_RANGE: AtomicU16 = AtomicU16::new(0);
/// How long a stopped daemon may take to exit on SIGTERM before SIGKILL.
const STOP_GRACE: Duration = Duration::from_secs(30);
/// The knobs of a private cluster (`CEPH_DEV_PORT` is added per cluster).
const PRIVATE_KNOBS: [(&str, &str); 4] = [
    // BlueStore: a MemStore OSD loses its data when it stops.
    ("CEPH_DEV_STORE", "bluestore"),
    // A sparse file. Removed snapshots are trimmed slowly (5 s sleeps), so
    // an outage test's backups and restores pile up: with 8G its OSD once
    // reached `nearfull`, and the restart, which waits for HEALTH_OK,
    // timed out.
    ("CEPH_DEV_OSD_SIZE", "16G"),
    ("CEPH_DEV_POOLS", "volumes backups"),
    ("CEPH_DEV_RGW", "0"),
];

impl PrivateCluster {
    /// Starts a private cluster for `test`, or returns `None` (after
    /// printing why) when `test` must skip, under the rules of
    /// [`for_test`] (a private cluster needs the Ceph binaries and
    /// `ceph-up.sh` even when `CEPH_CONF` names a cluster). Panics if
    /// `EMBER_REQUIRE_CEPH=1` and it cannot be made, if no port range is
    /// free, or if the cluster fails to start (after stopping and deleting
    /// what was started; `ceph-up.sh`'s stderr is in the message).
    pub fn for_test(test: &str) -> Option<PrivateCluster> {
        let up = match linked().and_then(|()| ceph_script("ceph-up.sh")) {
            Ok(script) => script,
            Err(why) => return skip(test, &why),
        };
        let (port, lock_path, lock) = claim_port_range().unwrap_or_else(|why| panic!("{why}"));
        let dir = PathBuf::from(format!("/tmp/ceph-private-{port}"));
        let mut cluster = PrivateCluster {
            cluster: DevCluster {
                conf: dir.join("ceph.conf"),
            },
            dir,
            port,
            lock_path,
            lock: Some(lock),
        };
        // A directory left by a process that died holding this range.
        cluster.remove();
        let started = Instant::now();
        cluster.cluster.conf = cluster
            .ceph_up(&up)
            .unwrap_or_else(|why| panic!("private Ceph cluster for {test}: {why}"));
        println!(
            "{test}: private Ceph cluster ready in {:.1} s ({}, ports {port}..{})",
            started.elapsed().as_secs_f64(),
            cluster.dir.display(),
            port + PRIVATE_PORTS - 1
        );
        Some(cluster)
    }

    /// The cluster: its `ceph.conf`, connections, CLIs.
    pub fn cluster(&self) -> &DevCluster {
        &self.cluster
    }

    /// Its directory (`ceph.conf`, keyring, data, `log/`, `run/`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Its first port (the monitor's).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Stops the OSD as an operator or a crash-free outage would: SIGTERM
    /// to the pid in `run/osd.0.pid`, SIGKILL if it is still there after
    /// 30 s; returns once the process is gone. Client I/O then blocks (or
    /// fails after `rados osd op timeout`) until [`PrivateCluster::restart`].
    pub fn stop_osd(&self) -> Result<(), String> {
        let pid_file = self.dir.join("run/osd.0.pid");
        let text = std::fs::read_to_string(&pid_file)
            .map_err(|e| format!("{}: {e}", pid_file.display()))?;
        let pid = text
            .trim()
            .parse::<i32>()
            .map_err(|e| format!("{}: {text:?}: {e}", pid_file.display()))?;
        let pid = Pid::from_raw(pid);
        if !self.owns(pid) {
            return Err(format!("osd.0 (pid {pid}) is not running"));
        }
        for (signal, grace) in [(Signal::SIGTERM, STOP_GRACE), (Signal::SIGKILL, STOP_GRACE)] {
            match kill(pid, signal) {
                Ok(()) | Err(Errno::ESRCH) => {}
                Err(e) => return Err(format!("kill -{signal} {pid} (osd.0): {e}")),
            }
            let deadline = Instant::now() + grace;
            while self.owns(pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if !self.owns(pid) {
                // ceph-up.sh restarts the daemons whose pid file names no
                // live process: make sure a reused pid cannot pass for it.
                let _ = std::fs::remove_file(&pid_file);
                return Ok(());
            }
        }
        Err(format!("osd.0 (pid {pid}) survived SIGKILL"))
    }

    /// Starts what is down again (re-runs `ceph-up.sh` on the directory)
    /// and returns once the cluster is `HEALTH_OK` with every PG active.
    pub fn restart(&self) -> Result<(), String> {
        let up = ceph_script("ceph-up.sh")?;
        self.ceph_up(&up).map(drop)
    }

    /// Runs `ceph-up.sh` on this cluster's directory and knobs.
    fn ceph_up(&self, script: &Path) -> Result<PathBuf, String> {
        let port = self.port.to_string();
        let mut env = PRIVATE_KNOBS.to_vec();
        env.push(("CEPH_DEV_PORT", &port));
        ceph_up(script, &[self.dir.as_os_str()], &env)
    }

    /// Whether `pid` is a daemon of this cluster (alive, started with
    /// `-c DIR/ceph.conf`): what ceph-down.sh checks before a kill.
    fn owns(&self, pid: Pid) -> bool {
        let marker = format!("-c {} ", self.dir.join("ceph.conf").display());
        std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|cmdline| {
                let line: String = String::from_utf8_lossy(&cmdline).replace('\0', " ");
                line.contains(&marker)
            })
            .unwrap_or(false)
    }

    /// Stops the daemons (`ceph-down.sh DIR --wipe`) and deletes the
    /// directory; best effort, reporting failures on stderr.
    fn remove(&self) {
        if let Ok(script) = ceph_script("ceph-down.sh") {
            let down = Command::new("bash")
                .arg(&script)
                .arg(&self.dir)
                .arg("--wipe")
                .output();
            match down {
                Ok(output) if output.status.success() => {}
                Ok(output) => eprintln!(
                    "ceph-down.sh {}: {}: {}",
                    self.dir.display(),
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(e) => eprintln!("ceph-down.sh {}: {e}", self.dir.display()),
            }
        }
        // What --wipe leaves: a directory ceph-up.sh had not marked yet.
        // The name is this range's, which the lock reserves to us.
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                eprintln!("remove {}: {e}", self.dir.display())
            }
            _ => {}
        }
    }
}

impl Drop for PrivateCluster {
    /// Stops the daemons and deletes the directory, then gives the port
    /// range back (removing its lock file while still holding the lock).
    fn drop(&mut self) {
        self.remove();
        let _ = std::fs::remove_file(&self.lock_path);
        drop(self.lock.take());
    }
}

/// Takes the first free range of ports for a private cluster: locks its
/// lock file (skipping ranges other processes hold) and checks that
/// nothing listens on any of its ports.
fn claim_port_range() -> Result<(u16, PathBuf, Flock<File>), String> {
    for _ in 0..PRIVATE_RANGES {
        let slot = NEXT_RANGE.fetch_add(1, Ordering::Relaxed) % PRIVATE_RANGES;
        let port = PRIVATE_PORT_BASE + slot * PRIVATE_PORTS;
        let path = PathBuf::from(format!("/tmp/ceph-private-{port}.lock"));
        let Some(lock) = lock_file(&path)? else {
            continue;
        };
        if (port..port + PRIVATE_PORTS).all(port_free) {
            return Ok((port, path, lock));
        }
    }
    Err(format!(
        "no free range of {PRIVATE_PORTS} ports for a private Ceph cluster in {PRIVATE_PORT_BASE}..{}",
        PRIVATE_PORT_BASE + PRIVATE_RANGES * PRIVATE_PORTS
    ))
}

/// An exclusive lock on the file at `path` (created if needed), or `None`
/// if another holds it. A lock on a file its holder removed meanwhile
/// (the path no longer names the locked file) does not count.
fn lock_file(path: &Path) -> Result<Option<Flock<File>>, String> {
    let failed = |e: &dyn std::fmt::Display| format!("lock {}: {e}", path.display());
    loop {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| failed(&e))?;
        let lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => lock,
            Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
            Err((_, e)) => return Err(failed(&e)),
        };
        let locked = lock.metadata().map_err(|e| failed(&e))?;
        match std::fs::metadata(path) {
            Ok(now) if now.dev() == locked.dev() && now.ino() == locked.ino() => {
                return Ok(Some(lock))
            }
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failed(&e)),
        }
    }
}

/// Whether nothing listens on 127.0.0.1:`port`.
fn port_free(port: u16) -> bool {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// A name no other test (or run) uses, for images, objects and prefixes.
pub fn unique_name(label: &str) -> String {
    format!("ember-test-{label}-{}", uuid::Uuid::new_v4().simple())
}

/// `len` reproducible bytes that depend on `seed`, with no zero byte (so
/// no 4 KiB block reads as a hole), and no 4 KiB block repeated.
pub fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x as u8) | 1
        })
        .collect()
}

/// Removes image `name` and its snapshots (unprotecting them first), best
/// effort: test clean-up, which must not fail a test that already failed.
pub fn remove_image(io: &crate::IoCtx, name: &str) {
    let _ = crate::rbd::remove_with_snapshots(io, name);
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `CEPH_CONF` if set; else starts (or reuses) the shared dev cluster.
/// `Err` means skip; a cluster that fails to start is a panic.
fn find_or_start() -> Result<DevCluster, String> {
    linked()?;
    if let Some(conf) = std::env::var_os("CEPH_CONF").filter(|c| !c.is_empty()) {
        return Ok(DevCluster { conf: conf.into() });
    }
    let script = ceph_script("ceph-up.sh")?;
    let started = Instant::now();
    let conf = ceph_up(&script, &[], &[]).unwrap_or_else(|why| panic!("{why}"));
    println!(
        "ceph-up.sh: cluster ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        conf.display()
    );
    Ok(DevCluster { conf })
}

/// `Err` (why tests skip) in a build without librados and librbd.
fn linked() -> Result<(), String> {
    if LINKED {
        Ok(())
    } else {
        Err(
            "ember-ceph was built without librados/librbd: apt-get install librados-dev librbd-dev"
                .into(),
        )
    }
}

/// The path of `../shared/ceph/NAME` beside the workspace; `Err` (why
/// tests skip) if it or the Ceph binaries it runs are missing.
fn ceph_script(name: &str) -> Result<PathBuf, String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/ceph")
        .join(name);
    if !script.is_file() {
        return Err(format!(
            "CEPH_CONF is not set and {} does not exist",
            script.display()
        ));
    }
    let missing: Vec<&str> = ["ceph-mon", "ceph-osd", "ceph-mgr", "ceph", "rbd"]
        .into_iter()
        .filter(|b| !on_path(b))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the Ceph binaries are not installed ({} missing): apt-get install ceph-mon ceph-osd ceph-mgr ceph-common radosgw curl",
            missing.join(", ")
        ));
    }
    Ok(script)
}

/// Runs `ceph-up.sh` with `args` and the `env` knobs, and returns the
/// `CEPH_CONF` it exports; `Err` says what failed, with its stderr.
fn ceph_up(script: &Path, args: &[&OsStr], env: &[(&str, &str)]) -> Result<PathBuf, String> {
    let output = Command::new("bash")
        .arg(script)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .map_err(|e| format!("running {}: {e}", script.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        return Err(format!(
            "{} failed ({}):\n{}",
            script.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    exports(&stdout)
        .into_iter()
        .find(|(k, _)| k == "CEPH_CONF")
        .map(|(_, v)| PathBuf::from(v))
        .ok_or_else(|| format!("{} printed no CEPH_CONF:\n{stdout}", script.display()))
}

/// The `export K=V` lines of ceph-up.sh, values unquoted.
fn exports(stdout: &str) -> Vec<(String, String)> {
    stdout
        .lines()
        .filter_map(|line| line.trim().strip_prefix("export "))
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            (
                k.to_string(),
                v.trim_matches(|c| c == '\'' || c == '"').to_string(),
            )
        })
        .collect()
}
