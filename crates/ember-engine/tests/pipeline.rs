//! Backup, restore, verify and gc against a real POSIX repository.

mod common;

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use common::*;
use ember_engine::{
    run_backup, run_gc, run_restore, run_verify, BackupRequest, CancelToken, ChunkProblem,
    EngineError, ParentChoice, Progress, VerifyScope,
};
use ember_repo::RepoError;
use ember_types::Codec;
use ember_volume::{Source, Target, VolumeError};

#[test]
fn incremental_chain_restores_every_level_byte_for_byte() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let mut data = volume_bytes(1, 64);
    let mut versions = Vec::new();
    let mut parent = ParentChoice::None;
    for level in 0..5u64 {
        if level > 0 {
            mutate(&mut data, level, 3);
        }
        write(&volume, &data);
        let info = fx.backup(&volume, parent.clone());
        if level > 0 {
            assert!(
                info.stats.unchanged_chunks > 0,
                "level {level} reused its parent"
            );
            assert!(
                info.stats.new_chunks <= 6,
                "level {level} stored only what changed"
            );
        }
        versions.push((info.id, data.clone()));
        parent = ParentChoice::Latest;
    }
    for (level, (id, expected)) in versions.iter().enumerate() {
        assert!(
            fx.restore(id) == *expected,
            "level {level} restores identical"
        );
    }
}

#[test]
fn identical_data_is_stored_once_across_volumes() {
    let fx = Fixture::new();
    let data = volume_bytes(2, 32);
    write(&fx.path("a.img"), &data);
    write(&fx.path("b.img"), &data);
    let first = fx.backup(&fx.path("a.img"), ParentChoice::None);
    let files_after_first = pack_files(&fx.repo_path()).len();
    let second = fx.backup(&fx.path("b.img"), ParentChoice::None);
    assert!(first.stats.new_chunks > 0);
    assert_eq!(second.stats.new_chunks, 0);
    assert_eq!(second.stats.deduplicated_chunks, first.stats.new_chunks);
    assert_eq!(pack_files(&fx.repo_path()).len(), files_after_first);
    assert!(fx.restore(&second.id) == data);
}

#[test]
fn sparse_source_holes_are_skipped_and_restores_stay_sparse() {
    let fx = Fixture::new();
    let volume = fx.path("sparse.img");
    let file = std::fs::File::create(&volume).expect("create");
    file.set_len(64 << 20).expect("set_len");
    drop(file);
    let payload = noise(9, 8192);
    {
        use std::os::unix::fs::FileExt;
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&volume)
            .expect("open");
        file.write_all_at(&payload, 40 << 20).expect("write");
    }
    let info = fx.backup(&volume, ParentChoice::None);
    assert_eq!(info.stats.new_chunks, 2);
    assert!(
        info.stats.bytes_read < 2 << 20,
        "holes were not read ({} bytes read)",
        info.stats.bytes_read
    );

    let out = fx.path("out.img");
    let target = Target::create(&out, info.volume_size).expect("target");
    run_restore(
        &fx.repo,
        &info.id,
        Box::new(target),
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
    .expect("restore");
    let meta = std::fs::metadata(&out).expect("meta");
    assert_eq!(meta.len(), 64 << 20);
    assert!(
        meta.blocks() * 512 < 1 << 20,
        "restore wrote zeros ({} blocks)",
        meta.blocks()
    );
    assert!(std::fs::read(&out).expect("read") == std::fs::read(&volume).expect("read"));
}

#[test]
fn deleting_any_backup_leaves_the_others_restorable_after_gc() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let mut data = volume_bytes(3, 48);
    let mut versions = Vec::new();
    for level in 0..3u64 {
        mutate(&mut data, 10 + level, 4);
        write(&volume, &data);
        let parent = if level == 0 {
            ParentChoice::None
        } else {
            ParentChoice::Latest
        };
        versions.push((fx.backup(&volume, parent).id, data.clone()));
    }
    // Delete the full backup and the middle one: the newest still has everything.
    fx.repo.delete_backup(&versions[0].0).expect("delete full");
    fx.repo
        .delete_backup(&versions[1].0)
        .expect("delete middle");
    let report = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert_eq!(report.backups, 1);
    assert_eq!(
        pack_files(&fx.repo_path()).len() as u64,
        report.packs_in_use,
        "exactly the packs the remaining backup uses stay"
    );
    assert!(fx.restore(&versions[2].0) == versions[2].1);
    let verify =
        run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert!(verify.is_clean(), "{verify:?}");
    assert!(verify.bad_unreferenced_chunks.is_empty());
    assert!(matches!(
        fx.repo.backup_info(&versions[1].0),
        Err(RepoError::BackupNotFound(_))
    ));
}

#[test]
fn corrupted_and_missing_chunks_are_detected_by_restore_and_verify() {
    let fx = Fixture::new();
    write(&fx.path("a.img"), &volume_bytes(4, 16));
    write(&fx.path("b.img"), &volume_bytes(40, 16));
    let a = fx.backup(&fx.path("a.img"), ParentChoice::None);
    let packs_of_a = pack_files(&fx.repo_path());
    let b = fx.backup(&fx.path("b.img"), ParentChoice::None);
    let packs_of_b: Vec<_> = pack_files(&fx.repo_path())
        .into_iter()
        .filter(|p| !packs_of_a.contains(p))
        .collect();
    assert!(!packs_of_a.is_empty() && !packs_of_b.is_empty());

    // Flip one payload bit of the first frame of a pack of `a` (after the
    // 8-byte pack magic and the 16-byte frame header); remove `b`'s packs.
    let mut pack = std::fs::read(&packs_of_a[0]).expect("read pack");
    pack[8 + 16] ^= 0x01;
    std::fs::write(&packs_of_a[0], &pack).expect("damage");
    for file in &packs_of_b {
        std::fs::remove_file(file).expect("remove");
    }

    for info in [&a, &b] {
        let out = fx.path("out.img");
        let target = Target::create(&out, info.volume_size).expect("target");
        let err = run_restore(
            &fx.repo,
            &info.id,
            Box::new(target),
            tuning(),
            &Progress::new(),
            &CancelToken::new(),
        )
        .expect_err("restore must fail");
        let message = err.to_string();
        assert!(
            matches!(err, EngineError::BadChunk { backup, .. } if backup == info.id),
            "{message}"
        );
        assert!(message.contains(&info.id.to_string()), "{message}");
        assert!(!out.exists(), "a failed restore leaves no file");
    }

    let only_a = run_verify(
        &fx.repo,
        VerifyScope::Backup(a.id),
        tuning(),
        &Progress::new(),
    )
    .expect("verify");
    assert!(!only_a.is_clean());
    assert_eq!(only_a.bad_chunks.len(), 1, "{only_a:?}");
    assert!(matches!(
        only_a.bad_chunks[0].problem,
        ChunkProblem::Damaged(_)
    ));
    assert_eq!(only_a.affected_backups.len(), 1);
    assert_eq!(only_a.affected_backups[0].id, a.id);

    let all = run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert_eq!(all.affected_backups.len(), 2, "{all:?}");
    assert_eq!(
        all.bad_chunks
            .iter()
            .filter(|c| c.problem == ChunkProblem::Missing)
            .count() as u64,
        b.stats.new_chunks
    );
    assert_eq!(all.bad_chunks.len() as u64, b.stats.new_chunks + 1);
    assert!(all.bad_unreferenced_chunks.is_empty());
}

#[test]
fn a_damaged_pack_is_not_reused_by_the_next_backup_of_the_same_data() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let data = volume_bytes(5, 8);
    write(&volume, &data);
    fx.backup(&volume, ParentChoice::None);
    for file in pack_files(&fx.repo_path()) {
        // Damaged by hand (the store never shows a torn pack): truncated.
        let pack = std::fs::read(&file).expect("read");
        std::fs::write(&file, &pack[..pack.len() / 2]).expect("tear");
    }
    let again = fx.backup(&volume, ParentChoice::None);
    assert_eq!(
        again.stats.deduplicated_chunks, 0,
        "packs whose index cannot be read are not trusted"
    );
    assert!(fx.restore(&again.id) == data);
}

#[test]
fn damaged_manifest_is_reported_not_trusted() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(6, 8));
    let info = fx.backup(&volume, ParentChoice::None);
    let manifest = fx.repo_path().join("backups").join(info.id.to_string());
    let mut bytes = std::fs::read(&manifest).expect("read");
    bytes[10] ^= 0xff;
    std::fs::write(&manifest, &bytes).expect("damage");
    assert!(matches!(
        fx.repo.open_entries(&info.id),
        Err(RepoError::DamagedManifest { .. })
    ));
    let report =
        run_verify(&fx.repo, VerifyScope::All, tuning(), &Progress::new()).expect("verify");
    assert!(!report.is_clean());
    assert!(report.affected_backups[0]
        .reason
        .contains("manifest damaged"));
    let gc = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new());
    assert!(
        matches!(gc, Err(EngineError::GcRefused(_))),
        "gc must not guess"
    );
}

#[test]
fn restore_onto_a_larger_existing_target_zeroes_the_tail_and_a_small_one_is_refused() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let data = volume_bytes(7, 8);
    write(&volume, &data);
    let info = fx.backup(&volume, ParentChoice::None);

    let small = fx.path("small.img");
    write(&small, &[0xaa; 4096]);
    assert!(matches!(
        Target::open_existing(&small, info.volume_size),
        Err(VolumeError::TooSmall { .. })
    ));
    assert_eq!(
        std::fs::read(&small).expect("read"),
        vec![0xaa; 4096],
        "untouched"
    );

    let large = fx.path("large.img");
    write(&large, &vec![0xffu8; data.len() + 3 * 4096]);
    let target = Target::open_existing(&large, info.volume_size).expect("target");
    run_restore(
        &fx.repo,
        &info.id,
        Box::new(target),
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
    .expect("restore");
    let restored = std::fs::read(&large).expect("read");
    assert!(restored[..data.len()] == data[..]);
    assert!(
        restored[data.len()..].iter().all(|&b| b == 0),
        "tail zeroed"
    );
}

#[test]
fn restore_into_an_existing_volume_overwrites_old_data_in_zero_regions() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let data = volume_bytes(8, 16);
    write(&volume, &data);
    let info = fx.backup(&volume, ParentChoice::None);
    let existing = fx.path("existing.img");
    write(&existing, &noise(99, data.len()));
    let target = Target::open_existing(&existing, info.volume_size).expect("target");
    run_restore(
        &fx.repo,
        &info.id,
        Box::new(target),
        tuning(),
        &Progress::new(),
        &CancelToken::new(),
    )
    .expect("restore");
    assert!(std::fs::read(&existing).expect("read") == data);
}

#[test]
fn every_codec_round_trips() {
    let fx = Fixture::new();
    for (n, codec) in [Codec::None, Codec::Zstd, Codec::Zlib, Codec::Bz2]
        .into_iter()
        .enumerate()
    {
        let volume = fx.path(&format!("vol-{codec}.img"));
        let data = volume_bytes(20 + n as u64, 8);
        write(&volume, &data);
        let mut request = BackupRequest::full(volume.display().to_string());
        request.codec = codec;
        let source = Source::open(&volume).expect("source");
        let info = run_backup(
            &fx.repo,
            &source,
            &request,
            tuning(),
            &Progress::new(),
            &CancelToken::new(),
        )
        .expect("backup");
        assert_eq!(info.codec, codec);
        assert!(fx.restore(&info.id) == data, "{codec}");
    }
}

#[test]
fn incremental_of_a_grown_volume_and_default_parent_selection() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    let mut data = volume_bytes(30, 8);
    write(&volume, &data);
    let full = fx.backup(&volume, ParentChoice::None);
    data.extend(noise(31, 3 * 4096 + 17));
    write(&volume, &data);
    let incr = fx.backup(&volume, ParentChoice::Latest);
    assert_eq!(incr.parent, Some(full.id));
    assert!(incr.stats.unchanged_chunks >= 5);
    assert!(fx.restore(&incr.id) == data);

    let other = fx.path("other.img");
    write(&other, &data);
    assert!(matches!(
        fx.try_backup(&other, ParentChoice::Latest),
        Err(EngineError::NoParent(_))
    ));
}

#[test]
fn cancelled_backup_is_never_listed() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(40, 64));
    let cancel = CancelToken::new();
    cancel.cancel();
    let source = Source::open(&volume).expect("source");
    let request = BackupRequest::full(volume.display().to_string());
    let result = run_backup(
        &fx.repo,
        &source,
        &request,
        tuning(),
        &Progress::new(),
        &cancel,
    );
    assert!(matches!(result, Err(EngineError::Cancelled)));
    assert!(fx.repo.list_backups().expect("list").backups.is_empty());
    assert!(
        fx.repo.live_writers().expect("leases").is_empty(),
        "lease released"
    );
}

#[test]
fn gc_keeps_packs_a_running_backup_may_use_and_refuses_when_its_parent_vanishes() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(50, 8));
    let parent = fx.backup(&volume, ParentChoice::None);

    // A backup "running" on top of `parent` (its lease is held), which then
    // loses its parent: gc must not collect the parent's chunks.
    let running = ember_types::BackupId::new_random();
    let lease = fx
        .repo
        .lease_writer(running, Some(parent.id))
        .expect("lease");
    fx.repo.delete_backup(&parent.id).expect("delete");
    let refused = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new());
    assert!(
        matches!(refused, Err(EngineError::GcRefused(_))),
        "{refused:?}"
    );
    assert!(!pack_files(&fx.repo_path()).is_empty());

    let dry = run_gc(&fx.repo, Duration::ZERO, true, &Progress::new());
    assert!(dry.is_err(), "dry runs refuse too");
    drop(lease);
    let report = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert!(report.packs_removed > 0);
    assert!(pack_files(&fx.repo_path()).is_empty());
}

#[test]
fn gc_keeps_unreferenced_packs_newer_than_the_oldest_running_writer() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(51, 8));
    // A writer that started before these chunks were written may be about
    // to reference them (a dedup hit), so they stay while it runs.
    let writer = fx
        .repo
        .lease_writer(ember_types::BackupId::new_random(), None)
        .expect("lease");
    std::thread::sleep(Duration::from_millis(20));
    let info = fx.backup(&volume, ParentChoice::None);
    fx.repo.delete_backup(&info.id).expect("delete");
    let packs = pack_files(&fx.repo_path()).len() as u64;
    assert!(packs > 0);
    let kept = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert_eq!(kept.packs_removed, 0);
    assert_eq!(kept.packs_kept_recent, packs);
    drop(writer);
    let removed = run_gc(&fx.repo, Duration::ZERO, false, &Progress::new()).expect("gc");
    assert_eq!(removed.packs_removed, packs);
    assert!(pack_files(&fx.repo_path()).is_empty());
}

#[test]
fn gc_spares_recent_unreferenced_packs_within_the_grace_period() {
    let fx = Fixture::new();
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(60, 8));
    let info = fx.backup(&volume, ParentChoice::None);
    fx.repo.delete_backup(&info.id).expect("delete");
    let kept = run_gc(&fx.repo, Duration::from_secs(3600), false, &Progress::new()).expect("gc");
    assert_eq!(kept.packs_removed, 0);
    assert!(kept.packs_kept_recent > 0);
    let dry = run_gc(&fx.repo, Duration::ZERO, true, &Progress::new()).expect("gc");
    assert_eq!(dry.packs_removed, kept.packs_kept_recent);
    assert_eq!(
        pack_files(&fx.repo_path()).len() as u64,
        kept.packs_kept_recent,
        "dry run removes nothing"
    );
}

#[test]
fn unknown_backup_ids_are_clear_errors() {
    let fx = Fixture::new();
    let unknown = ember_types::BackupId::new_random();
    assert!(matches!(
        fx.repo.backup_info(&unknown),
        Err(RepoError::BackupNotFound(_))
    ));
    assert!(matches!(
        fx.repo.delete_backup(&unknown),
        Err(RepoError::BackupNotFound(_))
    ));
    let volume = fx.path("vol.img");
    write(&volume, &volume_bytes(70, 2));
    assert!(matches!(
        fx.try_backup(&volume, ParentChoice::Backup(unknown)),
        Err(EngineError::Repo(RepoError::BackupNotFound(_)))
    ));
    assert!(
        fx.repo.list_backups().expect("list").backups.is_empty(),
        "nothing written"
    );
}

#[test]
fn the_health_check_notices_a_repository_gone_from_its_directory() {
    let fx = Fixture::new();
    fx.repo.check().expect("a fresh repository is healthy");
    std::fs::rename(fx.repo_path(), fx.path("moved-away")).expect("move the repository");
    std::fs::create_dir(fx.repo_path()).expect("an empty directory in its place");
    assert!(matches!(fx.repo.check(), Err(RepoError::NotARepository(_))));
}
