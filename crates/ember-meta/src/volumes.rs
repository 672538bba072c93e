//! The `volumes` table.

use chrono::Utc;
use sqlx::any::AnyRow;

use crate::codec::{encode_flag, encode_metadata, encode_ts, Fields};
use crate::table::Table;
use crate::{Database, ListQuery, MetaError, Page, VolumeRecord};

const COLUMNS: &str = "id, project_id, user_id, name, description, size_gib, status, \
     previous_status, availability_zone, volume_type, path, owns_data, source_backup_id, \
     snapshot_id, metadata, created_at, updated_at";

const TABLE: Table = Table {
    name: "volumes",
    columns: COLUMNS,
    what: "volume",
    has_volume_id: false,
    has_data_timestamp: false,
};

fn decode(row: &AnyRow) -> Result<VolumeRecord, MetaError> {
    let f = Fields::new(row, "volume");
    Ok(VolumeRecord {
        id: f.text("id")?,
        project_id: f.text("project_id")?,
        user_id: f.text("user_id")?,
        name: f.opt_text("name")?,
        description: f.opt_text("description")?,
        size_gib: f.int("size_gib")?,
        status: f.text("status")?,
        previous_status: f.opt_text("previous_status")?,
        availability_zone: f.text("availability_zone")?,
        volume_type: f.opt_text("volume_type")?,
        path: f.text("path")?,
        owns_data: f.flag("owns_data")?,
        source_backup_id: f.opt_text("source_backup_id")?,
        snapshot_id: f.opt_text("snapshot_id")?,
        metadata: f.metadata("metadata")?,
        created_at: f.ts("created_at")?,
        updated_at: f.ts("updated_at")?,
    })
}

impl Database {
    /// Stores a new volume. `Conflict` if a volume with its id exists or
    /// ever existed.
    pub async fn insert_volume(&self, volume: &VolumeRecord) -> Result<(), MetaError> {
        let result = sqlx::query(
            "INSERT INTO volumes (id, project_id, user_id, name, description, size_gib, status, \
             previous_status, availability_zone, volume_type, path, owns_data, source_backup_id, \
             snapshot_id, metadata, created_at, updated_at, deleted) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, 0) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(volume.id.as_str())
        .bind(volume.project_id.as_str())
        .bind(volume.user_id.as_str())
        .bind(volume.name.as_deref())
        .bind(volume.description.as_deref())
        .bind(volume.size_gib)
        .bind(volume.status.as_str())
        .bind(volume.previous_status.as_deref())
        .bind(volume.availability_zone.as_str())
        .bind(volume.volume_type.as_deref())
        .bind(volume.path.as_str())
        .bind(encode_flag(volume.owns_data))
        .bind(volume.source_backup_id.as_deref())
        .bind(volume.snapshot_id.as_deref())
        .bind(encode_metadata(&volume.metadata)?)
        .bind(encode_ts(&volume.created_at)?)
        .bind(encode_ts(&volume.updated_at)?)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!("inserting volume {}", volume.id)))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::Conflict);
        }
        Ok(())
    }

    /// The volume with this id, unless absent or deleted.
    pub async fn get_volume(&self, id: &str) -> Result<Option<VolumeRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM volumes WHERE id = $1 AND deleted = 0"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("reading volume {id}")))?;
        row.as_ref().map(decode).transpose()
    }

    /// The volumes `query` selects (its `volume_id` filter does not apply
    /// to volumes and is ignored).
    pub async fn list_volumes(&self, query: &ListQuery) -> Result<Page<VolumeRecord>, MetaError> {
        self.list_rows(&TABLE, query, decode).await
    }

    /// Writes every field of `volume` over the stored volume with its id,
    /// except its status (statuses change only by compare-and-set, so an
    /// update never undoes a status change made meanwhile),
    /// with `updated_at` = now, and returns the stored record. `NotFound`
    /// if there is no such volume or it is deleted.
    pub async fn update_volume(&self, volume: &VolumeRecord) -> Result<VolumeRecord, MetaError> {
        let row = sqlx::query(&format!(
            "UPDATE volumes SET project_id = $2, user_id = $3, name = $4, description = $5, \
             size_gib = $6, previous_status = $7, availability_zone = $8, \
             volume_type = $9, path = $10, owns_data = $11, source_backup_id = $12, \
             snapshot_id = $13, metadata = $14, created_at = $15, updated_at = $16 \
             WHERE id = $1 AND deleted = 0 RETURNING {COLUMNS}"
        ))
        .bind(volume.id.as_str())
        .bind(volume.project_id.as_str())
        .bind(volume.user_id.as_str())
        .bind(volume.name.as_deref())
        .bind(volume.description.as_deref())
        .bind(volume.size_gib)
        .bind(volume.previous_status.as_deref())
        .bind(volume.availability_zone.as_str())
        .bind(volume.volume_type.as_deref())
        .bind(volume.path.as_str())
        .bind(encode_flag(volume.owns_data))
        .bind(volume.source_backup_id.as_deref())
        .bind(volume.snapshot_id.as_deref())
        .bind(encode_metadata(&volume.metadata)?)
        .bind(encode_ts(&volume.created_at)?)
        .bind(encode_ts(&Utc::now())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("updating volume {}", volume.id)))?;
        decode(&row.ok_or(MetaError::NotFound)?)
    }

    /// Sets the status of volume `id` to `new` if it is one of `expected`,
    /// atomically, and `updated_at` to now. Whether it changed (false if
    /// the status was another, or the volume is missing or deleted).
    pub async fn set_volume_status(
        &self,
        id: &str,
        expected: &[&str],
        new: &str,
    ) -> Result<bool, MetaError> {
        self.compare_and_set_status(&TABLE, id, expected, new, &[])
            .await
    }

    /// Deletes volume `id` softly: it disappears from gets and lists, its
    /// status becomes `deleted`, its id stays taken. `NotFound` if there is
    /// no such volume or it is deleted already.
    pub async fn delete_volume(&self, id: &str) -> Result<(), MetaError> {
        self.soft_delete(&TABLE, id).await
    }
}
