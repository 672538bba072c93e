//! The `snapshots` table.

use chrono::Utc;
use sqlx::any::AnyRow;

use crate::codec::{encode_metadata, encode_ts, Fields};
use crate::table::Table;
use crate::{Database, ListQuery, MetaError, Page, SnapshotRecord};

const COLUMNS: &str = "id, project_id, user_id, volume_id, name, description, size_gib, \
     status, path, metadata, created_at, updated_at";

const TABLE: Table = Table {
    name: "snapshots",
    columns: COLUMNS,
    what: "snapshot",
    has_volume_id: true,
    has_data_timestamp: false,
};

fn decode(row: &AnyRow) -> Result<SnapshotRecord, MetaError> {
    let f = Fields::new(row, "snapshot");
    Ok(SnapshotRecord {
        id: f.text("id")?,
        project_id: f.text("project_id")?,
        user_id: f.text("user_id")?,
        volume_id: f.text("volume_id")?,
        name: f.opt_text("name")?,
        description: f.opt_text("description")?,
        size_gib: f.int("size_gib")?,
        status: f.text("status")?,
        path: f.text("path")?,
        metadata: f.metadata("metadata")?,
        created_at: f.ts("created_at")?,
        updated_at: f.ts("updated_at")?,
    })
}

impl Database {
    /// Stores a new snapshot. `Conflict` if a snapshot with its id exists
    /// or ever existed.
    pub async fn insert_snapshot(&self, snapshot: &SnapshotRecord) -> Result<(), MetaError> {
        let result = sqlx::query(
            "INSERT INTO snapshots (id, project_id, user_id, volume_id, name, description, \
             size_gib, status, path, metadata, created_at, updated_at, deleted) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 0) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(snapshot.id.as_str())
        .bind(snapshot.project_id.as_str())
        .bind(snapshot.user_id.as_str())
        .bind(snapshot.volume_id.as_str())
        .bind(snapshot.name.as_deref())
        .bind(snapshot.description.as_deref())
        .bind(snapshot.size_gib)
        .bind(snapshot.status.as_str())
        .bind(snapshot.path.as_str())
        .bind(encode_metadata(&snapshot.metadata)?)
        .bind(encode_ts(&snapshot.created_at)?)
        .bind(encode_ts(&snapshot.updated_at)?)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!("inserting snapshot {}", snapshot.id)))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::Conflict);
        }
        Ok(())
    }

    /// The snapshot with this id, unless absent or deleted.
    pub async fn get_snapshot(&self, id: &str) -> Result<Option<SnapshotRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM snapshots WHERE id = $1 AND deleted = 0"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("reading snapshot {id}")))?;
        row.as_ref().map(decode).transpose()
    }

    /// The snapshots `query` selects.
    pub async fn list_snapshots(
        &self,
        query: &ListQuery,
    ) -> Result<Page<SnapshotRecord>, MetaError> {
        self.list_rows(&TABLE, query, decode).await
    }

    /// Writes every field of `snapshot` over the stored snapshot with its
    /// id except its status (statuses change only by compare-and-set, so an
    /// update never undoes a status change made meanwhile), with
    /// `updated_at` = now, and returns the stored record.
    /// `NotFound` if there is no such snapshot or it is deleted.
    pub async fn update_snapshot(
        &self,
        snapshot: &SnapshotRecord,
    ) -> Result<SnapshotRecord, MetaError> {
        let row = sqlx::query(&format!(
            "UPDATE snapshots SET project_id = $2, user_id = $3, volume_id = $4, name = $5, \
             description = $6, size_gib = $7, path = $8, metadata = $9, \
             created_at = $10, updated_at = $11 \
             WHERE id = $1 AND deleted = 0 RETURNING {COLUMNS}"
        ))
        .bind(snapshot.id.as_str())
        .bind(snapshot.project_id.as_str())
        .bind(snapshot.user_id.as_str())
        .bind(snapshot.volume_id.as_str())
        .bind(snapshot.name.as_deref())
        .bind(snapshot.description.as_deref())
        .bind(snapshot.size_gib)
        .bind(snapshot.path.as_str())
        .bind(encode_metadata(&snapshot.metadata)?)
        .bind(encode_ts(&snapshot.created_at)?)
        .bind(encode_ts(&Utc::now())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("updating snapshot {}", snapshot.id)))?;
        decode(&row.ok_or(MetaError::NotFound)?)
    }

    /// Sets the status of snapshot `id` to `new` if it is one of
    /// `expected`, atomically, and `updated_at` to now. Whether it changed.
    pub async fn set_snapshot_status(
        &self,
        id: &str,
        expected: &[&str],
        new: &str,
    ) -> Result<bool, MetaError> {
        self.compare_and_set_status(&TABLE, id, expected, new, &[])
            .await
    }

    /// Deletes snapshot `id` softly (status `deleted`, id stays taken).
    /// `NotFound` if there is no such snapshot or it is deleted already.
    pub async fn delete_snapshot(&self, id: &str) -> Result<(), MetaError> {
        self.soft_delete(&TABLE, id).await
    }
}
