//! Finding a Ceph cluster for tests and development: the one `CEPH_CONF`
//! names, or else the throw-away single-node cluster of
//! `../shared/ceph/ceph-up.sh` beside the workspace, started on first use.
//!
//! Without the Ceph binaries (or in a build without librados) tests skip,
//! saying why, unless `EMBER_REQUIRE_CEPH=1` (as in CI), where that is a
//! failure.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    let required = std::env::var("EMBER_REQUIRE_CEPH").is_ok_and(|v| v == "1");
    match CLUSTER.get_or_init(find_or_start) {
        Ok(cluster) => Some(cluster),
        Err(why) if required => panic!("EMBER_REQUIRE_CEPH=1 but no Ceph cluster: {why}"),
        Err(why) => {
            println!("{test}: skipped ({why})");
            None
        }
    }
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
    if let Ok(image) = crate::Image::open(io, name) {
        for snap in image.snap_list().unwrap_or_default() {
            let _ = image.snap_unprotect(&snap.name);
            let _ = image.snap_remove(&snap.name);
        }
    }
    let _ = crate::rbd::remove(io, name);
}

/// Whether `program` is on the PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// `CEPH_CONF` if set; else starts (or reuses) the shared dev cluster.
/// `Err` means skip; a cluster that fails to start is a panic.
fn find_or_start() -> Result<DevCluster, String> {
    if !LINKED {
        return Err(
            "ember-ceph was built without librados/librbd: apt-get install librados-dev librbd-dev"
                .into(),
        );
    }
    if let Some(conf) = std::env::var_os("CEPH_CONF").filter(|c| !c.is_empty()) {
        return Ok(DevCluster { conf: conf.into() });
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/ceph/ceph-up.sh");
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
    let started = Instant::now();
    let output = Command::new("bash")
        .arg(&script)
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", script.display()));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{} failed ({}):\n{stderr}",
        script.display(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let conf = exports(&stdout)
        .into_iter()
        .find(|(k, _)| k == "CEPH_CONF")
        .map(|(_, v)| PathBuf::from(v))
        .unwrap_or_else(|| panic!("{} printed no CEPH_CONF:\n{stdout}", script.display()));
    println!(
        "ceph-up.sh: cluster ready in {:.1} s ({})",
        started.elapsed().as_secs_f64(),
        conf.display()
    );
    Ok(DevCluster { conf })
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
