//! The metadata database, end to end: one suite run against SQLite (a
//! temporary file, and in memory) and a real PostgreSQL server.

mod common;

use std::collections::BTreeSet;
use std::time::Duration as StdDuration;

use chrono::{Duration, TimeZone, Utc};
use common::{at, backup, metadata, reference_order, snapshot, volume, Sortable};
use ember_meta::{
    BackupRecord, Database, Engine, ListQuery, MetaError, SnapshotRecord, SortDir, SortKey,
    VolumeRecord,
};
use sqlx::{AnyPool, Row};

// ---------------------------------------------------------------- runners

#[tokio::test]
async fn sqlite_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("meta.db");
    let url = format!("sqlite://{}", path.display());
    let db = Database::connect(&url).await.expect("connect");
    assert_eq!(db.engine(), Engine::Sqlite);
    assert!(path.is_file(), "the database file is created");
    let pool = raw_pool(&url).await;
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&pool)
        .await
        .and_then(|row| row.try_get(0))
        .expect("journal mode");
    assert_eq!(mode, "wal");
    pool.close().await;

    suite(db.clone()).await;
    undecodable_values(&db, &url).await;
    reopen(db, &url).await;
    println!("sqlite: suite passed on {}", path.display());
}

#[tokio::test]
async fn sqlite_in_memory() {
    let db = Database::connect("sqlite::memory:").await.expect("connect");
    suite(db).await;
    println!("sqlite: suite passed in memory");
}

#[tokio::test]
async fn postgres() {
    let required = std::env::var("EMBER_REQUIRE_PG").is_ok_and(|v| v == "1");
    let server = match common::pg::database().await {
        Ok(server) => server,
        Err(why) if required => panic!("EMBER_REQUIRE_PG=1 but no PostgreSQL server: {why}"),
        Err(why) => {
            println!("postgres: skipped (no PostgreSQL server: {why})");
            return;
        }
    };
    println!("postgres: running the suite on {}", server.describe());
    let db = Database::connect(server.url()).await.expect("connect");
    assert_eq!(db.engine(), Engine::Postgres);
    suite(db.clone()).await;
    undecodable_values(&db, server.url()).await;
    reopen(db, server.url()).await;
    println!("postgres: suite passed");
}

#[tokio::test]
async fn bad_urls_are_refused_without_echoing_secrets() {
    for url in ["mysql://user:secret@localhost/db", "secret", "sqlite://"] {
        match Database::connect(url).await {
            Err(MetaError::InvalidUrl(message)) => {
                assert!(!message.contains("secret"), "{message}");
            }
            other => panic!("{url}: expected InvalidUrl, got {other:?}"),
        }
    }
}

/// A plain sqlx pool on the same database, to look under the hood.
async fn raw_pool(url: &str) -> AnyPool {
    sqlx::any::install_default_drivers();
    AnyPool::connect(url).await.expect("raw pool")
}

/// Values that are not what Ember writes are reported as `Corrupt`, with
/// the row and column, not as a panic or a default.
async fn undecodable_values(db: &Database, url: &str) {
    let pool = raw_pool(url).await;
    for (i, (column, value)) in [
        ("metadata", "not json"),
        ("metadata", "[1, 2]"),
        ("created_at", "yesterday"),
        ("updated_at", "2026-13-45T99:00:00Z"),
    ]
    .into_iter()
    .enumerate()
    {
        let id = format!("v-corrupt-{i}");
        db.insert_volume(&volume(&id, "p-corrupt"))
            .await
            .expect("insert");
        sqlx::query(&format!("UPDATE volumes SET {column} = $1 WHERE id = $2"))
            .bind(value)
            .bind(id.as_str())
            .execute(&pool)
            .await
            .expect("damage");
        match db.get_volume(&id).await {
            Err(MetaError::Corrupt(message)) => {
                assert!(
                    message.contains(&id) && message.contains(column),
                    "{message}"
                );
            }
            other => panic!("{column} = {value}: expected Corrupt, got {other:?}"),
        }
        match db.list_volumes(&in_project("p-corrupt")).await {
            Err(MetaError::Corrupt(_)) => {}
            other => panic!("list with {column} = {value}: expected Corrupt, got {other:?}"),
        }
        db.delete_volume(&id).await.expect("delete");
    }
    db.insert_volume(&volume("v-corrupt-flag", "p-corrupt"))
        .await
        .expect("insert");
    sqlx::query("UPDATE volumes SET owns_data = 7 WHERE id = 'v-corrupt-flag'")
        .execute(&pool)
        .await
        .expect("damage");
    assert!(matches!(
        db.get_volume("v-corrupt-flag").await,
        Err(MetaError::Corrupt(_))
    ));
    db.delete_volume("v-corrupt-flag").await.expect("delete");
    pool.close().await;
}

/// Connecting again to a database that exists keeps its data and applies
/// no migration twice; so does connecting twice at once.
async fn reopen(db: Database, url: &str) {
    let kept = db.get_volume("v-crud-kept").await.expect("get");
    assert!(kept.is_some());
    db.close().await;
    match db.get_volume("v-crud-kept").await {
        Err(e @ MetaError::Database { .. }) => {
            let message = e.to_string();
            assert!(message.contains("reading volume v-crud-kept"), "{message}");
        }
        other => panic!("a closed database must fail with context, got {other:?}"),
    }

    let (a, b) = tokio::join!(Database::connect(url), Database::connect(url));
    let (a, b) = (a.expect("reconnect"), b.expect("reconnect"));
    assert_eq!(a.get_volume("v-crud-kept").await.expect("get"), kept);
    assert_eq!(b.get_volume("v-crud-kept").await.expect("get"), kept);
    a.close().await;
    b.close().await;
    let again = Database::connect(url).await.expect("reconnect");
    assert_eq!(again.get_volume("v-crud-kept").await.expect("get"), kept);
    again.close().await;

    let pool = raw_pool(url).await;
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&pool)
        .await
        .and_then(|row| row.try_get(0))
        .expect("migrations");
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .expect("migrations dir")
        .count();
    assert_eq!(applied, i64::try_from(files).expect("count"));
    pool.close().await;
}

/// Every behaviour, on whatever engine `db` runs. Expects an empty
/// database: the list checks run first and count every tenant's rows.
async fn suite(db: Database) {
    lists(&db).await;
    volumes(&db).await;
    snapshots(&db).await;
    backups(&db).await;
    backup_questions(&db).await;
    services(&db).await;
    timestamps(&db).await;
}

// ------------------------------------------------------------------ lists

/// Which table a list check runs on.
#[derive(Clone, Copy, Debug)]
enum Table {
    Volumes,
    Snapshots,
    Backups,
}

/// Ids and total of a list of `table`.
async fn list_ids(
    db: &Database,
    table: Table,
    query: &ListQuery,
) -> Result<(Vec<String>, u64), MetaError> {
    Ok(match table {
        Table::Volumes => {
            let page = db.list_volumes(query).await?;
            (page.items.into_iter().map(|r| r.id).collect(), page.total)
        }
        Table::Snapshots => {
            let page = db.list_snapshots(query).await?;
            (page.items.into_iter().map(|r| r.id).collect(), page.total)
        }
        Table::Backups => {
            let page = db.list_backups(query).await?;
            (page.items.into_iter().map(|r| r.id).collect(), page.total)
        }
    })
}

fn sort_specs() -> Vec<Vec<(SortKey, SortDir)>> {
    let keys = [
        SortKey::CreatedAt,
        SortKey::UpdatedAt,
        SortKey::Name,
        SortKey::Status,
        SortKey::Size,
        SortKey::Id,
        SortKey::DataTimestamp,
    ];
    let mut specs = vec![Vec::new()];
    for key in keys {
        for dir in [SortDir::Asc, SortDir::Desc] {
            specs.push(vec![(key, dir)]);
        }
    }
    specs.push(vec![
        (SortKey::Status, SortDir::Asc),
        (SortKey::Size, SortDir::Desc),
    ]);
    specs.push(vec![
        (SortKey::Name, SortDir::Desc),
        (SortKey::CreatedAt, SortDir::Asc),
    ]);
    specs.push(vec![
        (SortKey::Size, SortDir::Asc),
        (SortKey::Size, SortDir::Desc),
    ]);
    specs.push(vec![
        (SortKey::UpdatedAt, SortDir::Desc),
        (SortKey::Id, SortDir::Asc),
    ]);
    specs.push(vec![
        (SortKey::DataTimestamp, SortDir::Asc),
        (SortKey::Name, SortDir::Asc),
        (SortKey::Status, SortDir::Desc),
    ]);
    specs
}

/// Checks every sort order, paging by marker, offset and limit, on the
/// rows `query` selects (`rows`, the expected ones), against the
/// reference ordering.
async fn check_orders<T: Sortable>(db: &Database, table: Table, base: &ListQuery, rows: &[T]) {
    let n = rows.len();
    assert!(n >= 5, "enough rows to page");
    for sort in sort_specs() {
        let what = format!("{table:?} {base:?} sorted by {sort:?}");
        let expected = reference_order(rows, &sort);
        let query = ListQuery {
            sort: sort.clone(),
            ..base.clone()
        };
        let (ids, total) = list_ids(db, table, &query).await.expect("list");
        assert_eq!(ids, expected, "{what}");
        assert_eq!(total, n as u64, "{what}");

        // Page by marker, two rows at a time.
        let mut paged = Vec::new();
        let mut marker = None;
        loop {
            let query = ListQuery {
                sort: sort.clone(),
                marker: marker.clone(),
                limit: Some(2),
                ..base.clone()
            };
            let (ids, total) = list_ids(db, table, &query).await.expect("page");
            assert_eq!(total, n as u64, "{what}: total ignores paging");
            assert!(ids.len() <= 2);
            if ids.is_empty() {
                break;
            }
            marker = ids.last().cloned();
            paged.extend(ids);
            assert!(paged.len() <= n, "{what}: paging does not end");
        }
        assert_eq!(paged, expected, "{what}: pages by marker");

        // Offset and limit without a marker.
        let query = ListQuery {
            sort: sort.clone(),
            offset: Some(2),
            limit: Some(2),
            ..base.clone()
        };
        let (ids, _) = list_ids(db, table, &query).await.expect("offset");
        assert_eq!(ids, expected[2..4], "{what}: offset 2 limit 2");

        // Offset counts from the marker.
        let query = ListQuery {
            sort: sort.clone(),
            marker: Some(expected[0].clone()),
            offset: Some(1),
            limit: Some(3),
            ..base.clone()
        };
        let (ids, total) = list_ids(db, table, &query).await.expect("marker+offset");
        assert_eq!(ids, expected[2..5], "{what}: marker, offset 1, limit 3");
        assert_eq!(total, n as u64);

        // The last row as marker: nothing after it.
        let query = ListQuery {
            sort: sort.clone(),
            marker: expected.last().cloned(),
            ..base.clone()
        };
        let (ids, _) = list_ids(db, table, &query).await.expect("last marker");
        assert!(ids.is_empty(), "{what}: nothing after the last row");
    }

    // Limit 0, and an offset past the end.
    let query = ListQuery {
        limit: Some(0),
        ..base.clone()
    };
    assert_eq!(
        list_ids(db, table, &query).await.expect("limit 0"),
        (vec![], n as u64)
    );
    let query = ListQuery {
        offset: Some(n as u64 + 5),
        limit: Some(u64::MAX),
        ..base.clone()
    };
    assert_eq!(
        list_ids(db, table, &query).await.expect("offset past end"),
        (vec![], n as u64)
    );
}

/// The fields the filters look at, of any kind of row.
struct Filtered {
    id: String,
    project: String,
    name: Option<String>,
    status: String,
    volume: Option<String>,
}

/// Checks the filters of `query` select exactly `expected`.
async fn check_filter(db: &Database, table: Table, query: ListQuery, expected: BTreeSet<String>) {
    let (ids, total) = list_ids(db, table, &query).await.expect("list");
    let got: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(got.len(), ids.len(), "no duplicates");
    assert_eq!(got, expected, "{table:?} {query:?}");
    assert_eq!(total, expected.len() as u64, "{table:?} {query:?}");
}

fn in_project(project: &str) -> ListQuery {
    ListQuery {
        project_id: Some(project.to_owned()),
        ..ListQuery::default()
    }
}

/// (id, project, name, status, size, created, updated, data) of the list
/// rows: ties in every key, names that sort differently by bytes and by
/// a locale ("Beta" < "alpha" < "beta" by bytes), a missing name and an
/// empty one, and names with LIKE's wildcards.
#[allow(clippy::type_complexity)]
const ROWS: &[(&str, &str, Option<&str>, &str, i64, i64, i64, i64)] = &[
    ("m", "p-a", Some("alpha"), "available", 10, 0, 5, 7),
    ("c", "p-a", Some("Beta"), "error", 20, 0, 5, 1),
    ("x", "p-a", Some("beta"), "available", 10, 1, 3, 7),
    ("a", "p-a", None, "in-use", 30, 2, 3, 0),
    ("q", "p-a", Some("Ωmega"), "available", 5, 2, 7, 3),
    ("e", "p-a", Some("alpha"), "error", 20, 3, 1, 3),
    ("z", "p-a", Some(""), "available", 10, 3, 7, 9),
    ("b", "p-b", Some("50%_off"), "available", 10, 1, 2, 2),
    ("k", "p-b", None, "error", 15, 4, 4, 5),
    ("n", "p-b", Some("alphabet"), "available", 15, 4, 2, 5),
];

async fn lists(db: &Database) {
    let mut vols = Vec::new();
    let mut snaps = Vec::new();
    let mut backs = Vec::new();
    for &(id, project, name, status, size, created, updated, data) in ROWS {
        let mut v = volume(&format!("v-{id}"), project);
        v.name = name.map(str::to_owned);
        v.status = status.to_owned();
        v.size_gib = size;
        v.created_at = at(created);
        v.updated_at = at(updated);
        db.insert_volume(&v).await.expect("insert volume");
        vols.push(v);

        // Snapshots and backups of two volumes, alternating.
        let of = if created % 2 == 0 { "v-m" } else { "v-x" };
        let mut s = snapshot(&format!("s-{id}"), project, of);
        s.name = name.map(str::to_owned);
        s.status = status.to_owned();
        s.size_gib = size;
        s.created_at = at(created);
        s.updated_at = at(updated);
        db.insert_snapshot(&s).await.expect("insert snapshot");
        snaps.push(s);

        let mut b = backup(&format!("b-{id}"), project, of);
        b.name = name.map(str::to_owned);
        b.status = status.to_owned();
        b.size_gib = size;
        b.created_at = at(created);
        b.updated_at = at(updated);
        b.data_timestamp = at(data);
        db.insert_backup(&b).await.expect("insert backup");
        backs.push(b);
    }
    // Deleted rows, which no list may show.
    let mut v = volume("v-deleted", "p-a");
    v.name = Some("alpha".into());
    db.insert_volume(&v).await.expect("insert");
    db.delete_volume("v-deleted").await.expect("delete");
    db.insert_snapshot(&snapshot("s-deleted", "p-a", "v-m"))
        .await
        .expect("insert");
    db.delete_snapshot("s-deleted").await.expect("delete");
    db.insert_backup(&backup("b-deleted", "p-a", "v-m"))
        .await
        .expect("insert");
    db.delete_backup("b-deleted").await.expect("delete");

    let project_a = |r: &&VolumeRecord| r.project_id == "p-a";
    let vols_a: Vec<VolumeRecord> = vols.iter().filter(project_a).cloned().collect();
    let snaps_a: Vec<SnapshotRecord> = snaps
        .iter()
        .filter(|r| r.project_id == "p-a")
        .cloned()
        .collect();
    let backs_a: Vec<BackupRecord> = backs
        .iter()
        .filter(|r| r.project_id == "p-a")
        .cloned()
        .collect();

    // Hand-checked orders, so the reference itself is checked.
    let (ids, _) = list_ids(db, Table::Volumes, &in_project("p-a"))
        .await
        .expect("list");
    assert_eq!(
        ids,
        ["v-z", "v-e", "v-q", "v-a", "v-x", "v-m", "v-c"],
        "created_at desc, id desc"
    );
    let by_name = ListQuery {
        sort: vec![(SortKey::Name, SortDir::Asc)],
        ..in_project("p-a")
    };
    let (ids, _) = list_ids(db, Table::Volumes, &by_name).await.expect("list");
    assert_eq!(
        ids,
        ["v-a", "v-z", "v-c", "v-e", "v-m", "v-x", "v-q"],
        "bytes: None < '' < Beta < alpha < beta < Ωmega"
    );

    // Every sort order and paging, in one project and across all.
    check_orders(db, Table::Volumes, &in_project("p-a"), &vols_a).await;
    check_orders(db, Table::Volumes, &ListQuery::default(), &vols).await;
    check_orders(db, Table::Snapshots, &in_project("p-a"), &snaps_a).await;
    check_orders(db, Table::Snapshots, &ListQuery::default(), &snaps).await;
    check_orders(db, Table::Backups, &in_project("p-a"), &backs_a).await;
    check_orders(db, Table::Backups, &ListQuery::default(), &backs).await;
    // Filtered and paged at once.
    let available = ListQuery {
        status: Some("available".into()),
        ..ListQuery::default()
    };
    let backs_available: Vec<BackupRecord> = backs
        .iter()
        .filter(|b| b.status == "available")
        .cloned()
        .collect();
    check_orders(db, Table::Backups, &available, &backs_available).await;

    // Filters.
    for (table, rows) in [
        (
            Table::Volumes,
            vols.iter()
                .map(|v| Filtered {
                    id: v.id.clone(),
                    project: v.project_id.clone(),
                    name: v.name.clone(),
                    status: v.status.clone(),
                    volume: None,
                })
                .collect::<Vec<_>>(),
        ),
        (
            Table::Snapshots,
            snaps
                .iter()
                .map(|s| Filtered {
                    id: s.id.clone(),
                    project: s.project_id.clone(),
                    name: s.name.clone(),
                    status: s.status.clone(),
                    volume: Some(s.volume_id.clone()),
                })
                .collect(),
        ),
        (
            Table::Backups,
            backs
                .iter()
                .map(|b| Filtered {
                    id: b.id.clone(),
                    project: b.project_id.clone(),
                    name: b.name.clone(),
                    status: b.status.clone(),
                    volume: Some(b.volume_id.clone()),
                })
                .collect(),
        ),
    ] {
        let select = |keep: &dyn Fn(&Filtered) -> bool| -> BTreeSet<String> {
            rows.iter()
                .filter(|r| keep(r))
                .map(|r| r.id.clone())
                .collect()
        };
        check_filter(
            db,
            table,
            in_project("p-b"),
            select(&|r| r.project == "p-b"),
        )
        .await;
        check_filter(db, table, in_project("p-none"), BTreeSet::new()).await;
        check_filter(db, table, ListQuery::default(), select(&|_| true)).await;
        let named = |name: &str| ListQuery {
            name: Some(name.into()),
            ..ListQuery::default()
        };
        check_filter(
            db,
            table,
            named("alpha"),
            select(&|r| r.name.as_deref() == Some("alpha")),
        )
        .await;
        check_filter(db, table, named("Alpha"), BTreeSet::new()).await;
        check_filter(
            db,
            table,
            named(""),
            select(&|r| r.name.as_deref() == Some("")),
        )
        .await;
        let like = |part: &str, project: Option<&str>| ListQuery {
            name_like: Some(part.into()),
            project_id: project.map(str::to_owned),
            ..ListQuery::default()
        };
        let containing = |part: &'static str| {
            move |r: &Filtered| r.name.as_deref().is_some_and(|n| n.contains(part))
        };
        check_filter(db, table, like("lph", None), select(&containing("lph"))).await;
        assert_eq!(
            select(&containing("lph")).len(),
            3,
            "alpha, alpha, alphabet"
        );
        check_filter(
            db,
            table,
            like("lph", Some("p-a")),
            select(&|r| r.project == "p-a" && containing("lph")(r)),
        )
        .await;
        check_filter(db, table, like("eta", None), select(&containing("eta"))).await;
        check_filter(db, table, like("Bet", None), select(&containing("Bet"))).await;
        assert_eq!(select(&containing("Bet")).len(), 1, "case-sensitive");
        check_filter(db, table, like("%_", None), select(&containing("%_"))).await;
        check_filter(db, table, like("_", None), select(&containing("_"))).await;
        check_filter(db, table, like("%", None), select(&containing("%"))).await;
        assert_eq!(select(&containing("%")).len(), 1, "no wildcards");
        check_filter(db, table, like("mega", None), select(&containing("mega"))).await;
        check_filter(db, table, like("Ωm", None), select(&containing("Ωm"))).await;
        check_filter(db, table, like("nothing", None), BTreeSet::new()).await;
        let status = |s: &str| ListQuery {
            status: Some(s.into()),
            ..ListQuery::default()
        };
        check_filter(db, table, status("error"), select(&|r| r.status == "error")).await;
        check_filter(db, table, status("deleted"), BTreeSet::new()).await;
        let combined = ListQuery {
            project_id: Some("p-a".into()),
            status: Some("available".into()),
            name_like: Some("a".into()),
            ..ListQuery::default()
        };
        check_filter(
            db,
            table,
            combined,
            select(&|r| r.project == "p-a" && r.status == "available" && containing("a")(r)),
        )
        .await;
        let of_volume = ListQuery {
            volume_id: Some("v-x".into()),
            ..ListQuery::default()
        };
        match table {
            // Volumes have no volume_id: the filter is ignored.
            Table::Volumes => check_filter(db, table, of_volume, select(&|_| true)).await,
            _ => {
                let expected = select(&|r| r.volume.as_deref() == Some("v-x"));
                assert!(!expected.is_empty() && expected.len() < rows.len());
                check_filter(db, table, of_volume, expected).await;
            }
        }

        // Markers that match no row.
        let prefix = match table {
            Table::Volumes => "v",
            Table::Snapshots => "s",
            Table::Backups => "b",
        };
        for (marker, project) in [
            ("no-such-id".to_owned(), None),
            (format!("{prefix}-deleted"), None),
            (format!("{prefix}-k"), Some("p-a")),
        ] {
            let query = ListQuery {
                marker: Some(marker.clone()),
                project_id: project.map(str::to_owned),
                ..ListQuery::default()
            };
            match list_ids(db, table, &query).await {
                Err(MetaError::MarkerNotFound(m)) => assert_eq!(m, marker),
                other => {
                    panic!("{table:?} marker {marker}: expected MarkerNotFound, got {other:?}")
                }
            }
        }
        // The other project's row is a fine marker across all projects.
        let query = ListQuery {
            marker: Some(format!("{prefix}-k")),
            ..ListQuery::default()
        };
        list_ids(db, table, &query)
            .await
            .expect("marker across projects");
    }

    // A marker need not match the filters: rows after it that do.
    let query = ListQuery {
        status: Some("error".into()),
        sort: vec![(SortKey::Size, SortDir::Asc)],
        marker: Some("v-n".into()),
        ..ListQuery::default()
    };
    let (ids, total) = list_ids(db, Table::Volumes, &query).await.expect("list");
    // error rows by size asc, id asc: k (15), c (20), e (20); v-n is size 15, id n > k.
    assert_eq!(ids, ["v-c", "v-e"]);
    assert_eq!(total, 3);

    // Backups by data timestamp differ from by creation.
    let by_data = ListQuery {
        sort: vec![(SortKey::DataTimestamp, SortDir::Asc)],
        ..in_project("p-a")
    };
    let (ids, _) = list_ids(db, Table::Backups, &by_data).await.expect("list");
    assert_eq!(ids, ["b-a", "b-c", "b-e", "b-q", "b-m", "b-x", "b-z"]);
    let (ids, _) = list_ids(
        db,
        Table::Volumes,
        &ListQuery {
            sort: by_data.sort.clone(),
            ..in_project("p-a")
        },
    )
    .await
    .expect("list");
    assert_eq!(
        ids,
        ["v-c", "v-m", "v-x", "v-a", "v-q", "v-e", "v-z"],
        "volumes: creation time"
    );
}

// ----------------------------------------------------------- the records

async fn volumes(db: &Database) {
    let mut v = volume("v-crud", "p-crud");
    v.metadata = metadata();
    v.previous_status = Some("in-use".into());
    v.source_backup_id = Some("b-source".into());
    v.snapshot_id = Some("s-source".into());
    v.volume_type = None;
    v.description = None;
    v.owns_data = false;
    v.updated_at = at(0) + Duration::nanoseconds(789);
    db.insert_volume(&v).await.expect("insert");
    assert_eq!(db.get_volume("v-crud").await.expect("get"), Some(v.clone()));
    assert_eq!(db.get_volume("v-missing").await.expect("get"), None);
    assert!(matches!(
        db.insert_volume(&v).await,
        Err(MetaError::Conflict)
    ));
    let mut other = volume("v-crud", "p-other");
    other.name = None;
    assert!(matches!(
        db.insert_volume(&other).await,
        Err(MetaError::Conflict)
    ));
    assert_eq!(
        db.get_volume("v-crud").await.expect("get"),
        Some(v.clone()),
        "a conflict changes nothing"
    );

    // Update writes every field and stamps updated_at.
    let mut changed = VolumeRecord {
        id: "v-crud".into(),
        project_id: "p-crud-2".into(),
        user_id: "user-2".into(),
        name: None,
        description: Some("now described".into()),
        size_gib: 99,
        status: "in-use".into(),
        previous_status: None,
        availability_zone: "zone-2".into(),
        volume_type: Some("fast".into()),
        path: "/dev/vg0/v-crud".into(),
        owns_data: true,
        source_backup_id: None,
        snapshot_id: None,
        metadata: [("k".to_owned(), "v".to_owned())].into(),
        created_at: at(-100),
        updated_at: at(-100),
    };
    let before = Utc::now();
    let kept = db
        .get_volume(&changed.id)
        .await
        .expect("get")
        .expect("exists")
        .status;
    let stored = db.update_volume(&changed).await.expect("update");
    assert_eq!(stored.status, kept, "an update never writes the status");
    changed.status = kept;
    let after = Utc::now();
    assert!(before <= stored.updated_at && stored.updated_at <= after);
    changed.updated_at = stored.updated_at;
    assert_eq!(stored, changed);
    assert_eq!(
        db.get_volume("v-crud").await.expect("get"),
        Some(changed.clone())
    );
    let mut ghost = changed.clone();
    ghost.id = "v-missing".into();
    assert!(matches!(
        db.update_volume(&ghost).await,
        Err(MetaError::NotFound)
    ));

    // Compare-and-set.
    tokio::time::sleep(StdDuration::from_millis(2)).await;
    assert!(db
        .set_volume_status("v-crud", &["available", "in-use"], "backing-up")
        .await
        .expect("cas"));
    let now = db.get_volume("v-crud").await.expect("get").expect("exists");
    assert_eq!(now.status, "backing-up");
    assert!(now.updated_at > changed.updated_at, "CAS stamps updated_at");
    let mut same = now.clone();
    same.status = changed.status.clone();
    same.updated_at = changed.updated_at;
    assert_eq!(same, changed, "CAS changes only status and updated_at");
    assert!(!db
        .set_volume_status("v-crud", &["available", "in-use"], "deleting")
        .await
        .expect("cas"));
    assert!(!db
        .set_volume_status("v-crud", &[], "deleting")
        .await
        .expect("cas"));
    assert!(!db
        .set_volume_status("v-missing", &["backing-up"], "deleting")
        .await
        .expect("cas"));
    assert_eq!(
        db.get_volume("v-crud").await.expect("get"),
        Some(now.clone()),
        "failed CAS changes nothing"
    );
    assert!(db
        .set_volume_status("v-crud", &["backing-up"], "available")
        .await
        .expect("cas"));

    // Soft delete.
    db.delete_volume("v-crud").await.expect("delete");
    assert_eq!(db.get_volume("v-crud").await.expect("get"), None);
    assert!(matches!(
        db.delete_volume("v-crud").await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        db.delete_volume("v-missing").await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        db.update_volume(&changed).await,
        Err(MetaError::NotFound)
    ));
    assert!(!db
        .set_volume_status("v-crud", &["available", "deleted"], "available")
        .await
        .expect("cas"));
    assert!(
        matches!(db.insert_volume(&v).await, Err(MetaError::Conflict)),
        "ids are never reused"
    );
    assert_eq!(db.get_volume("v-crud").await.expect("get"), None);
    let page = db
        .list_volumes(&in_project("p-crud-2"))
        .await
        .expect("list");
    assert_eq!(page.total, 0);

    // Racing compare-and-sets: exactly one wins.
    db.insert_volume(&volume("v-race", "p-crud"))
        .await
        .expect("insert");
    let mut racers = tokio::task::JoinSet::new();
    for i in 0..8 {
        let db = db.clone();
        racers.spawn(async move {
            let new = format!("taken-{i}");
            let won = db
                .set_volume_status("v-race", &["available"], &new)
                .await
                .expect("cas");
            (won, new)
        });
    }
    let mut winners = Vec::new();
    while let Some(result) = racers.join_next().await {
        let (won, new) = result.expect("task");
        if won {
            winners.push(new);
        }
    }
    assert_eq!(winners.len(), 1, "exactly one CAS wins: {winners:?}");
    let raced = db.get_volume("v-race").await.expect("get").expect("exists");
    assert_eq!(raced.status, winners[0]);

    // Kept for the reopen check.
    let mut kept = volume("v-crud-kept", "p-crud");
    kept.metadata = metadata();
    db.insert_volume(&kept).await.expect("insert");
}

async fn snapshots(db: &Database) {
    let mut s = snapshot("s-crud", "p-crud", "v-crud-kept");
    s.metadata = metadata();
    s.description = Some("описание".into());
    db.insert_snapshot(&s).await.expect("insert");
    assert_eq!(
        db.get_snapshot("s-crud").await.expect("get"),
        Some(s.clone())
    );
    assert_eq!(db.get_snapshot("s-missing").await.expect("get"), None);
    assert!(matches!(
        db.insert_snapshot(&s).await,
        Err(MetaError::Conflict)
    ));

    let mut changed = SnapshotRecord {
        id: "s-crud".into(),
        project_id: "p-crud-2".into(),
        user_id: "user-2".into(),
        volume_id: "v-other".into(),
        name: None,
        description: None,
        size_gib: 42,
        status: "backing-up".into(),
        path: "/elsewhere".into(),
        metadata: Default::default(),
        created_at: at(-5),
        updated_at: at(-5),
    };
    let before = Utc::now();
    let kept = db
        .get_snapshot(&changed.id)
        .await
        .expect("get")
        .expect("exists")
        .status;
    let stored = db.update_snapshot(&changed).await.expect("update");
    assert_eq!(stored.status, kept, "an update never writes the status");
    changed.status = kept;
    assert!(before <= stored.updated_at && stored.updated_at <= Utc::now());
    changed.updated_at = stored.updated_at;
    assert_eq!(stored, changed);
    assert_eq!(
        db.get_snapshot("s-crud").await.expect("get"),
        Some(changed.clone())
    );
    let mut ghost = changed.clone();
    ghost.id = "s-missing".into();
    assert!(matches!(
        db.update_snapshot(&ghost).await,
        Err(MetaError::NotFound)
    ));

    assert!(db
        .set_snapshot_status("s-crud", &[changed.status.as_str()], "backing-up")
        .await
        .expect("cas"));
    changed.updated_at = db
        .get_snapshot("s-crud")
        .await
        .expect("get")
        .expect("exists")
        .updated_at;
    tokio::time::sleep(StdDuration::from_millis(2)).await;
    assert!(db
        .set_snapshot_status("s-crud", &["backing-up"], "available")
        .await
        .expect("cas"));
    let now = db
        .get_snapshot("s-crud")
        .await
        .expect("get")
        .expect("exists");
    assert_eq!(now.status, "available");
    assert!(now.updated_at > changed.updated_at);
    assert!(!db
        .set_snapshot_status("s-crud", &["backing-up"], "error")
        .await
        .expect("cas"));
    assert!(!db
        .set_snapshot_status("s-missing", &["available"], "error")
        .await
        .expect("cas"));
    assert_eq!(db.get_snapshot("s-crud").await.expect("get"), Some(now));

    db.delete_snapshot("s-crud").await.expect("delete");
    assert_eq!(db.get_snapshot("s-crud").await.expect("get"), None);
    assert!(matches!(
        db.delete_snapshot("s-crud").await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        db.update_snapshot(&changed).await,
        Err(MetaError::NotFound)
    ));
    assert!(!db
        .set_snapshot_status("s-crud", &["deleted"], "available")
        .await
        .expect("cas"));
    assert!(matches!(
        db.insert_snapshot(&s).await,
        Err(MetaError::Conflict)
    ));
}

async fn backups(db: &Database) {
    let mut b = backup("b-crud", "p-crud", "v-crud-kept");
    b.metadata = metadata();
    b.snapshot_id = Some("s-crud".into());
    b.parent_id = Some("b-parent".into());
    b.container = Some("container-1".into());
    b.fail_reason = Some("disk on fire 🔥".into());
    b.restore_volume_id = Some("v-restore".into());
    b.temp_snapshot_id = Some("s-temp".into());
    b.host = Some("host-1".into());
    b.availability_zone = None;
    b.object_count = 1234;
    b.size_gib = i64::from(u32::MAX) + 7;
    b.progress_done = 5;
    b.progress_total = 1 << 40;
    b.data_timestamp = at(-3600);
    db.insert_backup(&b).await.expect("insert");
    assert_eq!(db.get_backup("b-crud").await.expect("get"), Some(b.clone()));
    assert_eq!(db.get_backup("b-missing").await.expect("get"), None);
    assert!(matches!(
        db.insert_backup(&b).await,
        Err(MetaError::Conflict)
    ));

    let mut changed = backup("b-crud", "p-crud-2", "v-other");
    changed.status = "error".into();
    changed.name = None;
    changed.description = Some("changed".into());
    changed.availability_zone = Some("zone-9".into());
    changed.object_count = -1;
    changed.data_timestamp = at(9);
    changed.created_at = at(-9);
    let before = Utc::now();
    let kept = db
        .get_backup(&changed.id)
        .await
        .expect("get")
        .expect("exists")
        .status;
    let stored = db.update_backup(&changed).await.expect("update");
    assert_eq!(stored.status, kept, "an update never writes the status");
    changed.status = kept;
    assert!(before <= stored.updated_at && stored.updated_at <= Utc::now());
    changed.updated_at = stored.updated_at;
    assert_eq!(stored, changed);
    assert_eq!(
        db.get_backup("b-crud").await.expect("get"),
        Some(changed.clone())
    );
    let mut ghost = changed.clone();
    ghost.id = "b-missing".into();
    assert!(matches!(
        db.update_backup(&ghost).await,
        Err(MetaError::NotFound)
    ));

    // Outcome: only its columns change.
    db.set_backup_outcome("b-crud", 77, Some("why"))
        .await
        .expect("outcome");
    let now = db.get_backup("b-crud").await.expect("get").expect("exists");
    assert_eq!(
        (now.object_count, now.fail_reason.as_deref()),
        (77, Some("why"))
    );
    assert_eq!(now.status, changed.status);
    assert!(matches!(
        db.set_backup_outcome("b-missing", 1, None).await,
        Err(MetaError::NotFound)
    ));
    changed.object_count = 77;
    changed.fail_reason = Some("why".into());
    changed.updated_at = now.updated_at;

    // A failure: the status and its reason in one step, or neither.
    let status = changed.status.clone();
    assert!(!db
        .fail_backup("b-crud", &["no-such-status"], "error", "nope")
        .await
        .expect("fail"));
    assert!(db
        .fail_backup("b-crud", &[status.as_str()], "error", "disk on fire")
        .await
        .expect("fail"));
    let now = db.get_backup("b-crud").await.expect("get").expect("exists");
    assert_eq!(
        (
            now.status.as_str(),
            now.fail_reason.as_deref(),
            now.object_count
        ),
        ("error", Some("disk on fire"), 0)
    );
    assert!(db
        .set_backup_status("b-crud", &["error"], &status)
        .await
        .expect("back"));
    db.set_backup_outcome("b-crud", 77, Some("why"))
        .await
        .expect("outcome back");

    // Kind: the parent and why a backup is full, nothing else.
    db.set_backup_kind("b-crud", None, Some("no diff"))
        .await
        .expect("kind");
    let now = db.get_backup("b-crud").await.expect("get").expect("exists");
    assert_eq!(
        (now.parent_id.as_deref(), now.full_reason.as_deref()),
        (None, Some("no diff"))
    );
    assert!(matches!(
        db.set_backup_kind("b-missing", None, None).await,
        Err(MetaError::NotFound)
    ));
    db.set_backup_kind("b-crud", changed.parent_id.as_deref(), None)
        .await
        .expect("kind back");
    changed.updated_at = db
        .get_backup("b-crud")
        .await
        .expect("get")
        .expect("exists")
        .updated_at;

    // Progress: recorded, updated_at untouched.
    db.set_backup_progress("b-crud", 512, 4096)
        .await
        .expect("progress");
    let now = db.get_backup("b-crud").await.expect("get").expect("exists");
    assert_eq!((now.progress_done, now.progress_total), (512, 4096));
    assert_eq!(now.updated_at, changed.updated_at);
    assert!(matches!(
        db.set_backup_progress("b-missing", 1, 2).await,
        Err(MetaError::NotFound)
    ));

    assert!(db
        .set_backup_status("b-crud", &[changed.status.as_str()], "error")
        .await
        .expect("cas"));
    changed.updated_at = db
        .get_backup("b-crud")
        .await
        .expect("get")
        .expect("exists")
        .updated_at;
    tokio::time::sleep(StdDuration::from_millis(2)).await;
    assert!(db
        .set_backup_status("b-crud", &["creating", "error"], "deleting")
        .await
        .expect("cas"));
    let now = db.get_backup("b-crud").await.expect("get").expect("exists");
    assert_eq!(now.status, "deleting");
    assert!(now.updated_at > changed.updated_at);
    assert!(!db
        .set_backup_status("b-crud", &["creating", "error"], "deleting")
        .await
        .expect("cas"));
    assert!(!db
        .set_backup_status("b-missing", &["deleting"], "error")
        .await
        .expect("cas"));

    db.delete_backup("b-crud").await.expect("delete");
    assert_eq!(db.get_backup("b-crud").await.expect("get"), None);
    assert!(matches!(
        db.delete_backup("b-crud").await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        db.set_backup_progress("b-crud", 1, 2).await,
        Err(MetaError::NotFound)
    ));
    assert!(matches!(
        db.update_backup(&changed).await,
        Err(MetaError::NotFound)
    ));
    assert!(!db
        .set_backup_status("b-crud", &["deleted", "deleting"], "error")
        .await
        .expect("cas"));
    assert!(matches!(
        db.insert_backup(&b).await,
        Err(MetaError::Conflict)
    ));

    // Import revives a deleted id, but never replaces a live backup.
    db.import_backup(&b)
        .await
        .expect("import over a deleted row");
    assert_eq!(db.get_backup("b-crud").await.expect("get"), Some(b.clone()));
    assert!(matches!(
        db.import_backup(&b).await,
        Err(MetaError::Conflict)
    ));
}

/// Parent selection, dependents, quota usage and restart clean-up.
async fn backup_questions(db: &Database) {
    // Backups of volume v-q1 in project p-q: the chain and some noise.
    let mut rows = Vec::new();
    let mut add = |id: &str,
                   project: &str,
                   volume_id: &str,
                   status: &str,
                   data: i64,
                   created: i64,
                   size: i64,
                   parent: Option<&str>| {
        let mut b = backup(id, project, volume_id);
        b.status = status.into();
        b.data_timestamp = at(data);
        b.created_at = at(created);
        b.size_gib = size;
        b.parent_id = parent.map(str::to_owned);
        rows.push(b);
    };
    add("q-full", "p-q", "v-q1", "available", 100, 100, 10, None);
    add(
        "q-incr1",
        "p-q",
        "v-q1",
        "available",
        200,
        200,
        10,
        Some("q-full"),
    );
    add(
        "q-incr2",
        "p-q",
        "v-q1",
        "available",
        300,
        300,
        10,
        Some("q-full"),
    );
    add(
        "q-tie-a",
        "p-q",
        "v-q1",
        "available",
        400,
        401,
        10,
        Some("q-incr2"),
    );
    add(
        "q-tie-b",
        "p-q",
        "v-q1",
        "available",
        400,
        400,
        10,
        Some("q-incr2"),
    );
    add("q-failed", "p-q", "v-q1", "error", 500, 500, 10, None);
    add(
        "q-running",
        "p-q",
        "v-q1",
        "creating",
        600,
        600,
        10,
        Some("q-tie-a"),
    );
    add("q-restoring", "p-q", "v-q1", "restoring", 50, 50, 10, None);
    add(
        "q-deleted",
        "p-q",
        "v-q1",
        "available",
        700,
        700,
        10,
        Some("q-full"),
    );
    add("q-othervol", "p-q", "v-q2", "available", 800, 800, 3, None);
    add(
        "q-otherproj",
        "p-q-other",
        "v-q1",
        "available",
        900,
        900,
        7,
        None,
    );
    add(
        "q-otherproj-busy",
        "p-q-other",
        "v-q9",
        "creating",
        900,
        900,
        7,
        None,
    );
    for b in &rows {
        db.insert_backup(b).await.expect("insert");
    }
    db.delete_backup("q-deleted").await.expect("delete");

    let latest = |before: Option<i64>| async move {
        db.latest_available_backup("p-q", "v-q1", before.map(at))
            .await
            .expect("latest")
            .map(|b| b.id)
    };
    // Greatest data timestamp; on a tie the latest created.
    assert_eq!(latest(None).await.as_deref(), Some("q-tie-a"));
    assert_eq!(
        latest(Some(400)).await.as_deref(),
        Some("q-incr2"),
        "strictly before"
    );
    assert_eq!(latest(Some(401)).await.as_deref(), Some("q-tie-a"));
    assert_eq!(latest(Some(300)).await.as_deref(), Some("q-incr1"));
    assert_eq!(latest(Some(101)).await.as_deref(), Some("q-full"));
    assert_eq!(latest(Some(100)).await, None);
    let exact = db
        .latest_available_backup("p-q", "v-q1", Some(at(300) + Duration::microseconds(1)))
        .await
        .expect("latest");
    assert_eq!(
        exact.map(|b| b.id).as_deref(),
        Some("q-incr2"),
        "microsecond precision"
    );
    let full = db
        .latest_available_backup("p-q", "v-q2", None)
        .await
        .expect("latest")
        .expect("one");
    assert_eq!(full, rows[9], "the whole record");
    assert_eq!(
        db.latest_available_backup("p-q", "v-none", None)
            .await
            .expect("latest"),
        None
    );
    assert_eq!(
        db.latest_available_backup("p-q-other", "v-q1", None)
            .await
            .expect("latest")
            .map(|b| b.id)
            .as_deref(),
        Some("q-otherproj")
    );

    // Dependents: non-deleted children only.
    assert_eq!(
        db.count_dependent_backups("q-full").await.expect("count"),
        2
    );
    assert_eq!(
        db.count_dependent_backups("q-incr2").await.expect("count"),
        2
    );
    assert_eq!(
        db.count_dependent_backups("q-tie-a").await.expect("count"),
        1
    );
    assert_eq!(
        db.count_dependent_backups("q-running")
            .await
            .expect("count"),
        0
    );
    assert_eq!(
        db.count_dependent_backups("no-such").await.expect("count"),
        0
    );
    db.delete_backup("q-running").await.expect("delete");
    assert_eq!(
        db.count_dependent_backups("q-tie-a").await.expect("count"),
        0
    );

    // Usage: every non-deleted backup of the project, any status.
    // p-q: 12 rows less 2 deleted, 2 of another project: 8 of 10 GiB + 3.
    assert_eq!(db.backup_usage("p-q").await.expect("usage"), (8, 73));
    assert_eq!(db.backup_usage("p-q-other").await.expect("usage"), (2, 14));
    assert_eq!(db.backup_usage("p-empty").await.expect("usage"), (0, 0));

    // Restart clean-up: across projects, deleted excluded, oldest first.
    let busy = db
        .backups_in_status(&["creating", "restoring"])
        .await
        .expect("in status");
    assert!(busy
        .iter()
        .all(|b| b.status == "creating" || b.status == "restoring"));
    let ours: Vec<&str> = busy
        .iter()
        .map(|b| b.id.as_str())
        .filter(|id| id.starts_with("q-"))
        .collect();
    assert_eq!(ours, ["q-restoring", "q-otherproj-busy"]);
    let all_ids: BTreeSet<&str> = busy.iter().map(|b| b.id.as_str()).collect();
    // The list checks' backups in those statuses are there too: none.
    assert_eq!(all_ids.len(), busy.len());
    let created = busy.iter().map(|b| b.created_at).collect::<Vec<_>>();
    assert!(created.windows(2).all(|w| w[0] <= w[1]), "oldest first");
    assert!(db
        .backups_in_status(&[])
        .await
        .expect("in status")
        .is_empty());
    let errors = db.backups_in_status(&["error"]).await.expect("in status");
    assert!(errors.iter().any(|b| b.id == "q-failed"));
    assert!(errors.iter().all(|b| b.status == "error"));
}

async fn services(db: &Database) {
    assert!(db.list_services().await.expect("list").is_empty());
    let before = Utc::now();
    let first = db
        .heartbeat("host-b", "cinder-backup", "nova")
        .await
        .expect("heartbeat");
    assert_eq!(
        (
            first.host.as_str(),
            first.binary.as_str(),
            first.zone.as_str()
        ),
        ("host-b", "cinder-backup", "nova")
    );
    assert!(!first.disabled);
    assert_eq!(first.disabled_reason, None);
    assert_eq!(first.created_at, first.updated_at);
    assert!(before <= first.created_at && first.created_at <= Utc::now());

    tokio::time::sleep(StdDuration::from_millis(2)).await;
    let second = db
        .heartbeat("host-b", "cinder-backup", "zone-2")
        .await
        .expect("heartbeat");
    assert_eq!(second.created_at, first.created_at, "created once");
    assert!(second.updated_at > first.updated_at);
    assert_eq!(second.zone, "zone-2");

    db.heartbeat("host-a", "cinder-volume", "nova")
        .await
        .expect("heartbeat");
    db.heartbeat("host-a", "cinder-backup", "nova")
        .await
        .expect("heartbeat");
    let services = db.list_services().await.expect("list");
    let keys: Vec<(&str, &str)> = services
        .iter()
        .map(|s| (s.host.as_str(), s.binary.as_str()))
        .collect();
    assert_eq!(
        keys,
        [
            ("host-a", "cinder-backup"),
            ("host-a", "cinder-volume"),
            ("host-b", "cinder-backup")
        ]
    );
    assert_eq!(services[2], second);
}

/// Timestamps come back exactly: microseconds, nanoseconds, far past.
async fn timestamps(db: &Database) {
    let cases = [
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 39, 11)
            .single()
            .expect("date")
            + Duration::microseconds(123_456),
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 39, 11)
            .single()
            .expect("date")
            + Duration::microseconds(1),
        Utc.with_ymd_and_hms(2026, 11, 22, 3, 39, 11)
            .single()
            .expect("date")
            + Duration::nanoseconds(999_999_999),
        Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0)
            .single()
            .expect("date"),
        Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
            .single()
            .expect("date"),
    ];
    for (i, ts) in cases.iter().enumerate() {
        let mut v = volume(&format!("v-ts-{i}"), "p-ts");
        v.created_at = *ts;
        v.updated_at = *ts;
        db.insert_volume(&v).await.expect("insert");
        let got = db.get_volume(&v.id).await.expect("get").expect("exists");
        assert_eq!(got.created_at, *ts);
        assert_eq!(got.updated_at, *ts);
        let mut b = backup(&format!("b-ts-{i}"), "p-ts", "v-ts");
        b.data_timestamp = *ts;
        db.insert_backup(&b).await.expect("insert");
        assert_eq!(
            db.get_backup(&b.id)
                .await
                .expect("get")
                .expect("exists")
                .data_timestamp,
            *ts
        );
    }
    // And they sort as time: oldest first.
    let query = ListQuery {
        sort: vec![(SortKey::CreatedAt, SortDir::Asc)],
        ..in_project("p-ts")
    };
    let ids: Vec<String> = db
        .list_volumes(&query)
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|v| v.id)
        .collect();
    assert_eq!(ids, ["v-ts-3", "v-ts-1", "v-ts-0", "v-ts-2", "v-ts-4"]);

    let far = Utc
        .with_ymd_and_hms(10_000, 1, 1, 0, 0, 0)
        .single()
        .expect("date");
    let mut v = volume("v-ts-far", "p-ts");
    v.created_at = far;
    assert!(matches!(
        db.insert_volume(&v).await,
        Err(MetaError::InvalidValue(_))
    ));
    assert_eq!(db.get_volume("v-ts-far").await.expect("get"), None);
}
