//! Shared helpers for the metadata tests: records with sensible defaults,
//! fixed timestamps, and a reference implementation of list ordering.

#![allow(dead_code)]

pub mod pg;

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use ember_meta::{BackupRecord, SnapshotRecord, SortDir, SortKey, VolumeRecord};

/// 2026-11-22T03:39:11.123456Z plus `seconds`.
pub fn at(seconds: i64) -> DateTime<Utc> {
    let base = Utc
        .with_ymd_and_hms(2026, 11, 22, 3, 39, 11)
        .single()
        .expect("valid date");
    base + Duration::microseconds(123_456) + Duration::seconds(seconds)
}

/// Metadata with a few entries, unicode included.
pub fn metadata() -> BTreeMap<String, String> {
    BTreeMap::from([
        ("purpose".to_owned(), "database".to_owned()),
        ("ключ".to_owned(), "значение ✓ 日本語 🚀".to_owned()),
        ("quote\"and\\slash".to_owned(), "line\nbreak".to_owned()),
        ("empty".to_owned(), String::new()),
    ])
}

pub fn volume(id: &str, project: &str) -> VolumeRecord {
    VolumeRecord {
        id: id.to_owned(),
        project_id: project.to_owned(),
        user_id: "user-1".to_owned(),
        name: Some(format!("volume {id}")),
        description: Some("a test volume".to_owned()),
        size_gib: 10,
        status: "available".to_owned(),
        previous_status: None,
        availability_zone: "nova".to_owned(),
        volume_type: Some("ember".to_owned()),
        path: format!("/var/lib/ember/volumes/{id}.img"),
        owns_data: true,
        source_backup_id: None,
        snapshot_id: None,
        metadata: BTreeMap::new(),
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn snapshot(id: &str, project: &str, volume_id: &str) -> SnapshotRecord {
    SnapshotRecord {
        id: id.to_owned(),
        project_id: project.to_owned(),
        user_id: "user-1".to_owned(),
        volume_id: volume_id.to_owned(),
        name: Some(format!("snapshot {id}")),
        description: None,
        size_gib: 10,
        status: "available".to_owned(),
        path: format!("/var/lib/ember/snapshots/{id}.img"),
        metadata: BTreeMap::new(),
        created_at: at(0),
        updated_at: at(0),
    }
}

pub fn backup(id: &str, project: &str, volume_id: &str) -> BackupRecord {
    BackupRecord {
        id: id.to_owned(),
        project_id: project.to_owned(),
        user_id: "user-1".to_owned(),
        volume_id: volume_id.to_owned(),
        snapshot_id: None,
        parent_id: None,
        status: "available".to_owned(),
        name: Some(format!("backup {id}")),
        description: None,
        container: None,
        availability_zone: Some("nova".to_owned()),
        size_gib: 10,
        object_count: 0,
        fail_reason: None,
        data_timestamp: at(0),
        metadata: BTreeMap::new(),
        restore_volume_id: None,
        temp_snapshot_id: None,
        host: None,
        progress_done: 0,
        progress_total: 0,
        created_at: at(0),
        updated_at: at(0),
        full_reason: None,
    }
}

/// The fields lists sort by, for the reference ordering.
pub trait Sortable {
    fn id(&self) -> &str;
    fn name(&self) -> Option<&str>;
    fn status(&self) -> &str;
    fn size(&self) -> i64;
    fn created(&self) -> DateTime<Utc>;
    fn updated(&self) -> DateTime<Utc>;
    /// Data timestamp for backups, creation time for the others.
    fn data_time(&self) -> DateTime<Utc>;
}

macro_rules! sortable {
    ($t:ty, $data:ident) => {
        impl Sortable for $t {
            fn id(&self) -> &str {
                &self.id
            }
            fn name(&self) -> Option<&str> {
                self.name.as_deref()
            }
            fn status(&self) -> &str {
                &self.status
            }
            fn size(&self) -> i64 {
                self.size_gib
            }
            fn created(&self) -> DateTime<Utc> {
                self.created_at
            }
            fn updated(&self) -> DateTime<Utc> {
                self.updated_at
            }
            fn data_time(&self) -> DateTime<Utc> {
                self.$data
            }
        }
    };
}

sortable!(VolumeRecord, created_at);
sortable!(SnapshotRecord, created_at);
sortable!(BackupRecord, data_timestamp);

/// The documented order, computed with Rust's own orderings: names by
/// bytes with no name first, ties broken by id in the first key's
/// direction, created_at desc by default.
pub fn reference_order<T: Sortable>(rows: &[T], sort: &[(SortKey, SortDir)]) -> Vec<String> {
    let mut keys: Vec<(SortKey, SortDir)> = Vec::new();
    for &(key, dir) in sort {
        if !keys.iter().any(|(k, _)| *k == key) {
            keys.push((key, dir));
        }
    }
    if keys.is_empty() {
        keys.push((SortKey::CreatedAt, SortDir::Desc));
    }
    let first_dir = keys[0].1;
    keys.push((SortKey::Id, first_dir));
    let mut sorted: Vec<&T> = rows.iter().collect();
    sorted.sort_by(|a, b| {
        for &(key, dir) in &keys {
            let ordering = match key {
                SortKey::CreatedAt => a.created().cmp(&b.created()),
                SortKey::UpdatedAt => a.updated().cmp(&b.updated()),
                SortKey::Name => a.name().cmp(&b.name()),
                SortKey::Status => a.status().cmp(b.status()),
                SortKey::Size => a.size().cmp(&b.size()),
                SortKey::Id => a.id().cmp(b.id()),
                SortKey::DataTimestamp => a.data_time().cmp(&b.data_time()),
            };
            let ordering = match dir {
                SortDir::Asc => ordering,
                SortDir::Desc => ordering.reverse(),
            };
            if ordering != Ordering::Equal {
                return ordering;
            }
        }
        Ordering::Equal
    });
    sorted.iter().map(|r| r.id().to_owned()).collect()
}
