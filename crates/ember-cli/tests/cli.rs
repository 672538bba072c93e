//! The `ember` command, run as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn ember_command(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_ember"));
    command
        .env_remove("EMBER_REPO")
        .env("HOME", home)
        .env("XDG_DATA_HOME", home.join("data"));
    command
}

/// `ember --repo REPO ARGS… -q`, ready to run.
fn ember_in(repo: &Path, args: &[&str]) -> Command {
    let mut command = ember_command(repo.parent().expect("parent"));
    command.arg("--repo").arg(repo).arg("-q").args(args);
    command
}

/// Runs `ember --repo REPO ARGS… -q`.
fn ember(repo: &Path, args: &[&str]) -> Output {
    ember_in(repo, args).output().expect("run ember")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "ember failed: {}", stderr(&output));
    output
}

/// The id printed on the last line of a backup.
fn backup_id(output: &Output) -> String {
    stdout(output)
        .lines()
        .last()
        .expect("a last line")
        .trim()
        .to_string()
}

fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// Half noise, a quarter text, a quarter zeros, in 64 KiB runs.
fn volume(seed: u64, len: usize) -> Vec<u8> {
    let mut data = Vec::with_capacity(len);
    let mut run = 0u64;
    while data.len() < len {
        let take = (64 * 1024).min(len - data.len());
        match run % 4 {
            0 | 1 => data.extend(noise(seed * 7919 + run, take)),
            2 => data.extend(
                b"a line of text that compresses\n"
                    .iter()
                    .cycle()
                    .take(take),
            ),
            _ => data.extend(std::iter::repeat_n(0u8, take)),
        }
        run += 1;
    }
    data
}

fn listed_ids(repo: &Path) -> Vec<String> {
    let out = ok(ember(repo, &["--json", "backup", "list"]));
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    list.as_array()
        .expect("array")
        .iter()
        .map(|b| b["id"].as_str().expect("id").to_string())
        .collect()
}

fn repo_files(repo: &Path) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, out);
            } else {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(repo, &mut files);
    files.sort();
    files
}

#[test]
fn back_up_incrementally_restore_delete_and_collect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let vol = dir.path().join("vol.img");
    let mut data = volume(1, 4 << 20);
    std::fs::write(&vol, &data).expect("write");

    let full = ok(ember(
        &repo,
        &[
            "backup",
            "create",
            vol.to_str().expect("utf8"),
            "--name",
            "first",
        ],
    ));
    let full_id = backup_id(&full);
    data[100_000..104_096].copy_from_slice(&noise(2, 4096));
    std::fs::write(&vol, &data).expect("write");
    let incr = ok(ember(
        &repo,
        &[
            "--json",
            "backup",
            "create",
            vol.to_str().expect("utf8"),
            "--incremental",
        ],
    ));
    let record: serde_json::Value = serde_json::from_str(stdout(&incr).trim()).expect("json line");
    let incr_id = record["id"].as_str().expect("id").to_string();
    assert_eq!(record["backup"]["parent"].as_str(), Some(full_id.as_str()));
    assert_eq!(record["backup"]["stats"]["new_chunks"].as_u64(), Some(1));
    assert_eq!(listed_ids(&repo), vec![full_id.clone(), incr_id.clone()]);

    let show = ok(ember(&repo, &["backup", "show", &full_id[..8]]));
    assert!(stdout(&show).contains("first"));

    let out = dir.path().join("out.img");
    ok(ember(
        &repo,
        &["backup", "restore", &incr_id, out.to_str().expect("utf8")],
    ));
    assert!(std::fs::read(&out).expect("read") == data);

    ok(ember(&repo, &["backup", "delete", &full_id]));
    ok(ember(&repo, &["repo", "gc", "--grace", "0s"]));
    std::fs::remove_file(&out).expect("remove");
    ok(ember(
        &repo,
        &["backup", "restore", &incr_id, out.to_str().expect("utf8")],
    ));
    assert!(std::fs::read(&out).expect("read") == data);
    let verify = ok(ember(&repo, &["--json", "repo", "verify"]));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("json");
    assert_eq!(report["bad_chunks"].as_array().map(Vec::len), Some(0));
}

#[test]
fn default_repository_is_created_under_the_user_data_directory() {
    let home = tempfile::tempdir().expect("tempdir");
    let vol = home.path().join("vol.img");
    std::fs::write(&vol, volume(3, 1 << 20)).expect("write");
    let output = ember_command(home.path())
        .args(["-q", "backup", "create"])
        .arg(&vol)
        .output()
        .expect("run");
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(home.path().join("data/ember/repo/config").is_file());
    let id = backup_id(&output);
    let list = ember_command(home.path())
        .args(["backup", "list"])
        .output()
        .expect("run");
    assert!(stdout(&list).contains(&id));
}

/// Each case must fail with exit status `code`, say `needle` in one line,
/// and leave the repository's files exactly as they were.
#[test]
fn bad_input_gets_one_clear_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let vol = dir.path().join("vol.img");
    std::fs::write(&vol, volume(4, 1 << 20)).expect("write");
    let id = backup_id(&ok(ember(
        &repo,
        &["backup", "create", vol.to_str().expect("utf8")],
    )));
    let small = dir.path().join("small.img");
    std::fs::write(&small, [7u8; 4096]).expect("write");
    let not_a_repo = dir.path().join("empty");
    std::fs::create_dir(&not_a_repo).expect("mkdir");
    let unknown = "00000000-0000-4000-8000-000000000000";
    let missing = dir.path().join("missing.img");
    let cases: Vec<(Vec<&str>, i32, &str)> = vec![
        (
            vec!["backup", "create", missing.to_str().expect("utf8")],
            1,
            "no such file",
        ),
        (
            vec!["backup", "create", dir.path().to_str().expect("utf8")],
            1,
            "not a regular file",
        ),
        (vec!["backup", "show", unknown], 1, "does not exist"),
        (vec!["backup", "delete", unknown], 1, "does not exist"),
        (
            vec!["backup", "restore", unknown, "x.img"],
            1,
            "does not exist",
        ),
        (vec!["backup", "show", "zzz"], 1, "does not exist"),
        (
            vec![
                "backup",
                "create",
                vol.to_str().expect("utf8"),
                "--incremental",
                unknown,
            ],
            1,
            "does not exist",
        ),
        (
            vec!["backup", "restore", &id, small.to_str().expect("utf8")],
            1,
            "the backup needs",
        ),
        (
            vec![
                "backup",
                "create",
                vol.to_str().expect("utf8"),
                "--chunk-size",
                "5000",
            ],
            1,
            "power of two",
        ),
        (
            vec![
                "backup",
                "create",
                vol.to_str().expect("utf8"),
                "--compression",
                "lz4",
            ],
            2,
            "unknown compression",
        ),
        (
            vec![
                "backup",
                "create",
                vol.to_str().expect("utf8"),
                "--level",
                "99",
            ],
            2,
            "99",
        ),
    ];
    for (args, code, needle) in cases {
        let before = repo_files(&repo);
        let output = ember(&repo, &args);
        let err = stderr(&output);
        assert_eq!(output.status.code(), Some(code), "{args:?}: {err}");
        assert!(
            err.to_lowercase().contains(needle),
            "{args:?}: expected '{needle}' in: {err}"
        );
        if code == 1 {
            assert_eq!(
                err.trim_end().lines().count(),
                1,
                "{args:?}: one line: {err}"
            );
            assert!(err.starts_with("ember: error: "), "{err}");
        }
        assert_eq!(repo_files(&repo), before, "{args:?} changed the repository");
    }
    assert_eq!(
        std::fs::read(&small).expect("read"),
        [7u8; 4096],
        "target untouched"
    );

    let output = ember(&not_a_repo, &["backup", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        stderr(&output).contains("not an Ember repository"),
        "{}",
        stderr(&output)
    );
    let output = ember(&dir.path().join("nowhere"), &["backup", "list"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        !dir.path().join("nowhere").exists(),
        "reading never creates a repository"
    );
}

#[test]
fn verify_exits_3_on_damage_and_names_the_backup() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let vol = dir.path().join("vol.img");
    std::fs::write(&vol, volume(5, 1 << 20)).expect("write");
    let id = backup_id(&ok(ember(
        &repo,
        &["backup", "create", vol.to_str().expect("utf8")],
    )));
    ok(ember(&repo, &["repo", "verify"]));
    let pack = repo_files(&repo)
        .into_iter()
        .find(|p| p.to_string_lossy().contains("/packs/"))
        .expect("a pack");
    std::fs::remove_file(&pack).expect("remove");
    let output = ember(&repo, &["repo", "verify"]);
    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stdout(&output).contains(&id), "{}", stdout(&output));
    let restore = ember(
        &repo,
        &[
            "backup",
            "restore",
            &id,
            dir.path().join("o.img").to_str().expect("utf8"),
        ],
    );
    assert_eq!(restore.status.code(), Some(1));
    assert!(
        stderr(&restore).contains("is missing"),
        "{}",
        stderr(&restore)
    );
    assert!(!dir.path().join("o.img").exists());
}

#[test]
fn killed_backups_leave_the_repository_consistent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let vol = dir.path().join("vol.img");
    let data = volume(6, 96 << 20);
    std::fs::write(&vol, &data).expect("write");
    let mut completed = 0;
    for delay_ms in [0u64, 5, 20, 60, 120, 250, 500, 900] {
        let mut child = ember_command(dir.path())
            .arg("--repo")
            .arg(&repo)
            .args(["-q", "backup", "create"])
            .arg(&vol)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().expect("kill -9");
        if child.wait().expect("wait").success() {
            completed += 1;
        }
        if !repo.join("config").exists() {
            continue;
        }
        // Whatever is listed is whole; nothing half-written is listed.
        assert_eq!(
            listed_ids(&repo).len(),
            completed,
            "after a kill at {delay_ms} ms"
        );
        let verify = ember(&repo, &["--json", "repo", "verify"]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "after a kill at {delay_ms} ms: {}",
            stdout(&verify)
        );
    }
    assert!(completed < 8, "no kill landed during a backup");
    let partial_packs = repo_files(&repo)
        .iter()
        .filter(|p| p.to_string_lossy().contains("/packs/"))
        .count();
    assert!(partial_packs > 0, "killed backups wrote packs before dying");
    let id = backup_id(&ok(ember(
        &repo,
        &["backup", "create", vol.to_str().expect("utf8")],
    )));
    ok(ember(&repo, &["repo", "gc", "--grace", "0s"]));
    let out = dir.path().join("out.img");
    ok(ember(
        &repo,
        &["backup", "restore", &id, out.to_str().expect("utf8")],
    ));
    assert!(std::fs::read(&out).expect("read") == data);
    let verify = ok(ember(&repo, &["--json", "repo", "verify"]));
    let report: serde_json::Value = serde_json::from_slice(&verify.stdout).expect("json");
    assert_eq!(
        report["bad_unreferenced_chunks"].as_array().map(Vec::len),
        Some(0)
    );
    let leftovers: Vec<_> = repo_files(&repo)
        .into_iter()
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(".tmp-"))
        })
        .collect();
    assert!(
        leftovers.is_empty(),
        "gc sweeps interrupted writes: {leftovers:?}"
    );
}

/// A loop device as source and as restore target (needs root and losetup;
/// CI sets EMBER_REQUIRE_LOOP=1 so that it cannot be skipped there).
#[test]
fn loop_block_devices_back_up_and_restore() {
    let required = std::env::var_os("EMBER_REQUIRE_LOOP").is_some();
    let dir = tempfile::tempdir().expect("tempdir");
    let source_file = dir.path().join("source.img");
    let target_file = dir.path().join("target.img");
    let mut data = volume(7, 16 << 20);
    std::fs::write(&source_file, &data).expect("write");
    std::fs::write(&target_file, noise(8, 20 << 20)).expect("write");
    let (Some(source), Some(target)) = (
        LoopDevice::attach(&source_file),
        LoopDevice::attach(&target_file),
    ) else {
        assert!(
            !required,
            "EMBER_REQUIRE_LOOP is set but loop devices cannot be attached"
        );
        eprintln!("skipped: loop devices need root and losetup");
        return;
    };
    let repo = dir.path().join("repo");
    let full = backup_id(&ok(ember(&repo, &["backup", "create", source.path()])));

    // Change the device in place, then take an incremental of it.
    {
        use std::os::unix::fs::FileExt;
        let device = std::fs::OpenOptions::new()
            .write(true)
            .open(source.path())
            .expect("open device");
        let patch = noise(9, 8192);
        device.write_all_at(&patch, 5 << 20).expect("write device");
        device.sync_all().expect("sync device");
        data[5 << 20..(5 << 20) + 8192].copy_from_slice(&patch);
    }
    let incr = ok(ember(
        &repo,
        &[
            "--json",
            "backup",
            "create",
            source.path(),
            "--incremental",
            &full,
        ],
    ));
    let record: serde_json::Value = serde_json::from_str(stdout(&incr).trim()).expect("json");
    assert_eq!(record["backup"]["stats"]["new_chunks"].as_u64(), Some(1));
    let incr_id = record["id"].as_str().expect("id").to_string();

    // Restore onto the larger device: data, then zeros to its end.
    ok(ember(
        &repo,
        &["backup", "restore", &incr_id, target.path()],
    ));
    let restored = std::fs::read(target.path()).expect("read device");
    assert_eq!(restored.len(), 20 << 20);
    assert!(
        restored[..data.len()] == data[..],
        "device restore identical"
    );
    assert!(
        restored[data.len()..].iter().all(|&b| b == 0),
        "excess zeroed"
    );

    let file_copy = dir.path().join("copy.img");
    ok(ember(
        &repo,
        &[
            "backup",
            "restore",
            &full,
            file_copy.to_str().expect("utf8"),
        ],
    ));
    assert_eq!(std::fs::read(&file_copy).expect("read").len(), 16 << 20);
}

/// A loop device attached for the test's duration.
struct LoopDevice(String);

impl LoopDevice {
    fn attach(file: &Path) -> Option<Self> {
        let output = Command::new("losetup")
            .args(["--find", "--show"])
            .arg(file)
            .output()
            .ok()?;
        output
            .status
            .success()
            .then(|| LoopDevice(String::from_utf8_lossy(&output.stdout).trim().to_string()))
    }

    fn path(&self) -> &str {
        &self.0
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        let _ = Command::new("losetup").args(["--detach", &self.0]).status();
    }
}

/// `ember --repo rados:…` (and `$EMBER_REPO`) on a fresh prefix of the test
/// cluster's `backups` pool: a full and an incremental backup, both
/// restored byte for byte, verify, delete and gc; a wrong spec or pool is
/// one clear error. Skips without Ceph unless `EMBER_REQUIRE_CEPH=1`.
#[test]
fn rados_repositories_back_up_restore_and_collect() {
    let Some(cluster) = ember_ceph::dev_cluster::for_test("cli_rados") else {
        return;
    };
    /// Removes the repository's objects, whatever happens.
    struct Cleanup<'a>(&'a ember_ceph::dev_cluster::DevCluster, String);
    impl Drop for Cleanup<'_> {
        fn drop(&mut self) {
            self.0.remove_objects("backups", &format!("{}/", self.1));
        }
    }
    let prefix = format!("ember-test-cli-{}", uuid::Uuid::new_v4().simple());
    let _cleanup = Cleanup(cluster, prefix.clone());
    let spec = format!("rados:backups/{prefix}?conf={}", cluster.conf.display());
    let dir = tempfile::tempdir().expect("tempdir");
    let run = |args: &[&str]| {
        ember_command(dir.path())
            .arg("--repo")
            .arg(&spec)
            .arg("-q")
            .args(args)
            .output()
            .expect("run ember")
    };
    let vol = dir.path().join("vol.img");
    let vol_arg = vol.to_str().expect("utf8");
    let mut data = volume(6, 4 << 20);
    std::fs::write(&vol, &data).expect("write");
    let full_id = backup_id(&ok(run(&["backup", "create", vol_arg])));
    let full_data = data.clone();
    data[1_000_000..1_004_096].copy_from_slice(&noise(7, 4096));
    std::fs::write(&vol, &data).expect("write");
    let incr_id = backup_id(&ok(run(&["backup", "create", vol_arg, "--incremental"])));

    // $EMBER_REPO names it as well as --repo.
    let list = ember_command(dir.path())
        .env("EMBER_REPO", &spec)
        .args(["--json", "backup", "list"])
        .output()
        .expect("run ember");
    let list: serde_json::Value = serde_json::from_slice(&ok(list).stdout).expect("json");
    let ids: Vec<&str> = list
        .as_array()
        .expect("array")
        .iter()
        .map(|b| b["id"].as_str().expect("id"))
        .collect();
    assert_eq!(ids, vec![full_id.as_str(), incr_id.as_str()]);

    for (id, expected) in [(&full_id, &full_data), (&incr_id, &data)] {
        let out = dir.path().join(format!("restored-{id}.img"));
        ok(run(&["backup", "restore", id, out.to_str().expect("utf8")]));
        assert!(std::fs::read(&out).expect("read") == *expected, "{id}");
    }
    ok(run(&["repo", "verify"]));
    ok(run(&["backup", "delete", &full_id]));
    ok(run(&["repo", "gc", "--grace", "0s"]));
    let out = dir.path().join("again.img");
    ok(run(&[
        "backup",
        "restore",
        &incr_id,
        out.to_str().expect("utf8"),
    ]));
    assert!(std::fs::read(&out).expect("read") == data);

    // Wrong specs and pools: one clear line each.
    for (repo, code, needle) in [
        ("rados:", 2, "no pool"),
        ("rados:backups?color=red", 2, "unknown option 'color'"),
        (
            &format!("rados:ember-no-such-pool?conf={}", cluster.conf.display()),
            1,
            "the pool does not exist",
        ),
    ] {
        let output = ember_command(dir.path())
            .args(["--repo", repo, "backup", "list"])
            .output()
            .expect("run ember");
        assert_eq!(output.status.code(), Some(code), "{}", stderr(&output));
        assert!(stderr(&output).contains(needle), "{}", stderr(&output));
    }
}

/// The snapshots of an RBD image, oldest first.
fn snapshots(io: &ember_ceph::IoCtx, image: &str) -> Vec<String> {
    ember_ceph::Image::open(io, image)
        .and_then(|image| image.snap_list())
        .expect("snap_list")
        .into_iter()
        .map(|s| s.name)
        .collect()
}

/// Removes an RBD image and its snapshots when dropped.
struct RbdGuard<'a> {
    io: &'a ember_ceph::IoCtx,
    name: String,
}

impl Drop for RbdGuard<'_> {
    fn drop(&mut self) {
        ember_ceph::dev_cluster::remove_image(self.io, &self.name);
    }
}

/// `backup create rbd:…` twice (the second incremental, reading only what
/// the RBD diff reports), restores into a new image and a file, the
/// snapshot housekeeping, a failed backup, and an incremental whose
/// parent's snapshot is gone.
#[test]
fn rbd_images_back_up_incrementally_restore_and_keep_one_snapshot() {
    let Some(cluster) = ember_ceph::dev_cluster::for_test("rbd_cli") else {
        return;
    };
    let io = cluster.config("volumes").connect().expect("connect");
    let unique = |label: &str| format!("ember-test-{label}-{}", uuid::Uuid::new_v4().simple());
    let source = RbdGuard {
        io: &io,
        name: unique("cli"),
    };
    let restored = RbdGuard {
        io: &io,
        name: unique("cli-restored"),
    };
    ember_ceph::rbd::create(&io, &source.name, 64 << 20, &Default::default()).expect("create");
    let image = ember_ceph::Image::open(&io, &source.name).expect("open");
    image.write(0, &volume(11, 8 << 20)).expect("write");
    image.write(40 << 20, &noise(12, 1 << 20)).expect("write");

    let dir = tempfile::tempdir().expect("tempdir");
    let repo = dir.path().join("repo");
    let spec = format!("rbd:volumes/{}", source.name);
    let run = |args: &[&str]| {
        ember_in(&repo, args)
            .env("CEPH_CONF", &cluster.conf)
            .env_remove("CEPH_USER")
            .output()
            .expect("run ember")
    };
    let snapshot_of = |id: &str| {
        let names = snapshots(&io, &source.name);
        assert_eq!(names.len(), 1, "only the newest backup snapshot: {names:?}");
        assert!(
            names[0].starts_with(&format!("backup.{id}.snap.")),
            "{names:?} for {id}"
        );
        names[0].clone()
    };

    let full = ok(run(&["backup", "create", &spec]));
    assert!(
        stdout(&full).contains("(taken for this backup)"),
        "{}",
        stdout(&full)
    );
    let full_id = backup_id(&full);
    snapshot_of(&full_id);

    image.write(1 << 20, &noise(13, 4096)).expect("write");
    image.write(20 << 20, &noise(14, 4096)).expect("write");
    let incr = ok(run(&["--json", "backup", "create", &spec, "--incremental"]));
    let record: serde_json::Value = serde_json::from_str(stdout(&incr).trim()).expect("json");
    let incr_id = record["id"].as_str().expect("id").to_string();
    let incr_snap = snapshot_of(&incr_id);
    assert_eq!(record["backup"]["parent"].as_str(), Some(full_id.as_str()));
    assert_eq!(record["backup"]["source"].as_str(), Some(spec.as_str()));
    assert!(
        record["rbd"]["diff_from"]
            .as_str()
            .is_some_and(|s| s.starts_with(&format!("backup.{full_id}.snap."))),
        "{record}"
    );
    assert_eq!(
        record["rbd"]["removed_snapshots"].as_array().map(Vec::len),
        Some(1)
    );
    let stats = &record["backup"]["stats"];
    assert_eq!(stats["new_chunks"].as_u64(), Some(2), "{stats}");
    assert!(
        stats["bytes_read"].as_u64().expect("bytes_read") <= 2 * 32 * 1024,
        "only the changed chunks were read: {stats}"
    );

    // Restores into a new image and a file match the snapshot.
    let exported = dir.path().join("exported.img");
    cluster.cli(
        "rbd",
        &[
            "export",
            &format!("volumes/{}@{incr_snap}", source.name),
            exported.to_str().expect("utf8"),
        ],
    );
    let want = std::fs::read(&exported).expect("read export");
    let target = format!("rbd:volumes/{}", restored.name);
    let out = ok(run(&["backup", "restore", &incr_id, &target]));
    assert!(stdout(&out).contains(&target), "{}", stdout(&out));
    let restored_image = ember_ceph::Image::open(&io, &restored.name).expect("open restored");
    let mut got = vec![0u8; want.len()];
    assert_eq!(restored_image.read(0, &mut got).expect("read"), want.len());
    assert!(got == want, "restored image identical to the snapshot");
    drop(restored_image);
    let file = dir.path().join("restored.img");
    ok(run(&[
        "backup",
        "restore",
        &incr_id,
        file.to_str().expect("utf8"),
    ]));
    assert!(
        std::fs::read(&file).expect("read") == want,
        "restored file identical"
    );

    // The parent's snapshot gone: the incremental reads everything, says
    // why, and still stores only what changed.
    image.snap_remove(&incr_snap).expect("remove snapshot");
    image.write(30 << 20, &noise(15, 4096)).expect("write");
    let third = ok(run(&["backup", "create", &spec, "--incremental"]));
    let text = stdout(&third);
    assert!(
        text.contains("RBD diff not used: the parent's snapshot")
            && text.contains("is no longer on"),
        "{text}"
    );
    assert!(text.contains("1 chunks new"), "{text}");
    let third_snap = snapshot_of(&backup_id(&third));

    // A backup that fails after taking its snapshot (its packs cannot be
    // written) removes it.
    std::fs::rename(repo.join("packs"), dir.path().join("packs.away")).expect("move packs");
    std::fs::write(repo.join("packs"), b"not a directory").expect("block packs");
    let failed = run(&["backup", "create", &spec]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert_eq!(snapshot_of(&backup_id(&third)), third_snap);

    // Deleting the backup whose snapshot is on the image removes it.
    std::fs::remove_file(repo.join("packs")).expect("unblock packs");
    std::fs::rename(dir.path().join("packs.away"), repo.join("packs")).expect("move back");
    let deleted = ok(run(&["backup", "delete", &backup_id(&third)]));
    assert!(
        stdout(&deleted).contains(&format!("removed its snapshot of {spec}: {third_snap}")),
        "{}",
        stdout(&deleted)
    );
    assert_eq!(snapshots(&io, &source.name), Vec::<String>::new());
    drop(image);
}
