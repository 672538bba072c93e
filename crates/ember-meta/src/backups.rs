//! The `backups` table, and the questions the backup service asks of it:
//! parent selection, dependents, quota usage, restart clean-up.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::Row;

use crate::codec::{encode_metadata, encode_ts, Fields};
use crate::database::{Sql, Value};
use crate::table::Table;
use crate::{BackupRecord, Database, ListQuery, MetaError, Page};

const COLUMNS: &str = "id, project_id, user_id, volume_id, snapshot_id, parent_id, status, \
     name, description, container, availability_zone, size_gib, object_count, fail_reason, \
     data_timestamp, metadata, restore_volume_id, temp_snapshot_id, host, progress_done, \
     progress_total, created_at, updated_at, full_reason";

const TABLE: Table = Table {
    name: "backups",
    columns: COLUMNS,
    what: "backup",
    has_volume_id: true,
    has_data_timestamp: true,
};

fn decode(row: &AnyRow) -> Result<BackupRecord, MetaError> {
    let f = Fields::new(row, "backup");
    Ok(BackupRecord {
        id: f.text("id")?,
        project_id: f.text("project_id")?,
        user_id: f.text("user_id")?,
        volume_id: f.text("volume_id")?,
        snapshot_id: f.opt_text("snapshot_id")?,
        parent_id: f.opt_text("parent_id")?,
        status: f.text("status")?,
        name: f.opt_text("name")?,
        description: f.opt_text("description")?,
        container: f.opt_text("container")?,
        availability_zone: f.opt_text("availability_zone")?,
        size_gib: f.int("size_gib")?,
        object_count: f.int("object_count")?,
        fail_reason: f.opt_text("fail_reason")?,
        data_timestamp: f.ts("data_timestamp")?,
        metadata: f.metadata("metadata")?,
        restore_volume_id: f.opt_text("restore_volume_id")?,
        temp_snapshot_id: f.opt_text("temp_snapshot_id")?,
        host: f.opt_text("host")?,
        progress_done: f.int("progress_done")?,
        progress_total: f.int("progress_total")?,
        created_at: f.ts("created_at")?,
        updated_at: f.ts("updated_at")?,
        full_reason: f.opt_text("full_reason")?,
    })
}

/// A row count as returned by `COUNT(*)`.
fn count(row: &AnyRow, what: &str) -> Result<u64, MetaError> {
    let n: i64 = row
        .try_get("n")
        .map_err(|e| MetaError::Corrupt(format!("{what}: {e}")))?;
    u64::try_from(n).map_err(|_| MetaError::Corrupt(format!("{what}: negative count {n}")))
}

impl Database {
    /// Stores a new backup. `Conflict` if a backup with its id exists or
    /// ever existed.
    pub async fn insert_backup(&self, backup: &BackupRecord) -> Result<(), MetaError> {
        let result = sqlx::query(
            "INSERT INTO backups (id, project_id, user_id, volume_id, snapshot_id, parent_id, \
             status, name, description, container, availability_zone, size_gib, object_count, \
             fail_reason, data_timestamp, metadata, restore_volume_id, temp_snapshot_id, host, \
             progress_done, progress_total, created_at, updated_at, deleted) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, \
             $17, $18, $19, $20, $21, $22, $23, 0) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(backup.id.as_str())
        .bind(backup.project_id.as_str())
        .bind(backup.user_id.as_str())
        .bind(backup.volume_id.as_str())
        .bind(backup.snapshot_id.as_deref())
        .bind(backup.parent_id.as_deref())
        .bind(backup.status.as_str())
        .bind(backup.name.as_deref())
        .bind(backup.description.as_deref())
        .bind(backup.container.as_deref())
        .bind(backup.availability_zone.as_deref())
        .bind(backup.size_gib)
        .bind(backup.object_count)
        .bind(backup.fail_reason.as_deref())
        .bind(encode_ts(&backup.data_timestamp)?)
        .bind(encode_metadata(&backup.metadata)?)
        .bind(backup.restore_volume_id.as_deref())
        .bind(backup.temp_snapshot_id.as_deref())
        .bind(backup.host.as_deref())
        .bind(backup.progress_done)
        .bind(backup.progress_total)
        .bind(encode_ts(&backup.created_at)?)
        .bind(encode_ts(&backup.updated_at)?)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!("inserting backup {}", backup.id)))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::Conflict);
        }
        Ok(())
    }

    /// Stores a backup recreated from an export record. Like
    /// [`Database::insert_backup`], except that a deleted backup with the
    /// same id is replaced, as Cinder revives it; a live one is `Conflict`.
    pub async fn import_backup(&self, backup: &BackupRecord) -> Result<(), MetaError> {
        sqlx::query("DELETE FROM backups WHERE id = $1 AND deleted = 1")
            .bind(backup.id.as_str())
            .execute(&self.pool)
            .await
            .map_err(MetaError::db(format!(
                "clearing deleted backup {}",
                backup.id
            )))?;
        self.insert_backup(backup).await
    }

    /// The backup with this id, unless absent or deleted.
    pub async fn get_backup(&self, id: &str) -> Result<Option<BackupRecord>, MetaError> {
        let row = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM backups WHERE id = $1 AND deleted = 0"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("reading backup {id}")))?;
        row.as_ref().map(decode).transpose()
    }

    /// The backups `query` selects.
    pub async fn list_backups(&self, query: &ListQuery) -> Result<Page<BackupRecord>, MetaError> {
        self.list_rows(&TABLE, query, decode).await
    }

    /// Writes every field of `backup` over the stored backup with its id,
    /// except its status (statuses change only by compare-and-set, so an
    /// update never undoes a status change made meanwhile),
    /// with `updated_at` = now, and returns the stored record. `NotFound`
    /// if there is no such backup or it is deleted.
    pub async fn update_backup(&self, backup: &BackupRecord) -> Result<BackupRecord, MetaError> {
        let row = sqlx::query(&format!(
            "UPDATE backups SET project_id = $2, user_id = $3, volume_id = $4, snapshot_id = $5, \
             parent_id = $6, name = $7, description = $8, container = $9, \
             availability_zone = $10, size_gib = $11, object_count = $12, fail_reason = $13, \
             data_timestamp = $14, metadata = $15, restore_volume_id = $16, \
             temp_snapshot_id = $17, host = $18, progress_done = $19, progress_total = $20, \
             created_at = $21, updated_at = $22 \
             WHERE id = $1 AND deleted = 0 RETURNING {COLUMNS}"
        ))
        .bind(backup.id.as_str())
        .bind(backup.project_id.as_str())
        .bind(backup.user_id.as_str())
        .bind(backup.volume_id.as_str())
        .bind(backup.snapshot_id.as_deref())
        .bind(backup.parent_id.as_deref())
        .bind(backup.name.as_deref())
        .bind(backup.description.as_deref())
        .bind(backup.container.as_deref())
        .bind(backup.availability_zone.as_deref())
        .bind(backup.size_gib)
        .bind(backup.object_count)
        .bind(backup.fail_reason.as_deref())
        .bind(encode_ts(&backup.data_timestamp)?)
        .bind(encode_metadata(&backup.metadata)?)
        .bind(backup.restore_volume_id.as_deref())
        .bind(backup.temp_snapshot_id.as_deref())
        .bind(backup.host.as_deref())
        .bind(backup.progress_done)
        .bind(backup.progress_total)
        .bind(encode_ts(&backup.created_at)?)
        .bind(encode_ts(&Utc::now())?)
        .fetch_optional(&self.pool)
        .await
        .map_err(MetaError::db(format!("updating backup {}", backup.id)))?;
        decode(&row.ok_or(MetaError::NotFound)?)
    }

    /// Sets the status of backup `id` to `new` if it is one of `expected`,
    /// atomically, and `updated_at` to now. Whether it changed.
    pub async fn set_backup_status(
        &self,
        id: &str,
        expected: &[&str],
        new: &str,
    ) -> Result<bool, MetaError> {
        self.compare_and_set_status(&TABLE, id, expected, new, &[])
            .await
    }

    /// Like [`Database::set_backup_status`], and sets the failure reason
    /// in the same statement (with no objects), so that no reader sees the
    /// failed status without its reason.
    pub async fn fail_backup(
        &self,
        id: &str,
        expected: &[&str],
        new: &str,
        reason: &str,
    ) -> Result<bool, MetaError> {
        let also = [
            ("fail_reason", Value::Text(reason.to_owned())),
            ("object_count", Value::Int(0)),
        ];
        self.compare_and_set_status(&TABLE, id, expected, new, &also)
            .await
    }

    /// Deletes backup `id` softly (status `deleted`, id stays taken).
    /// `NotFound` if there is no such backup or it is deleted already.
    pub async fn delete_backup(&self, id: &str) -> Result<(), MetaError> {
        self.soft_delete(&TABLE, id).await
    }

    /// How many non-deleted backups have backup `id` as their parent.
    pub async fn count_dependent_backups(&self, id: &str) -> Result<u64, MetaError> {
        let row =
            sqlx::query("SELECT COUNT(*) AS n FROM backups WHERE parent_id = $1 AND deleted = 0")
                .bind(id)
                .fetch_one(&self.pool)
                .await
                .map_err(MetaError::db(format!(
                    "counting the backups depending on {id}"
                )))?;
        count(&row, "dependent backups")
    }

    /// The parent Cinder chooses for an incremental backup of `volume_id`:
    /// the project's `available` backup of that volume with the greatest
    /// `data_timestamp` (strictly before `data_before`, if given); on equal
    /// timestamps the latest created, then the greatest id.
    pub async fn latest_available_backup(
        &self,
        project_id: &str,
        volume_id: &str,
        data_before: Option<DateTime<Utc>>,
    ) -> Result<Option<BackupRecord>, MetaError> {
        let c = self.collate();
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM backups WHERE deleted = 0 AND status = 'available' \
             AND project_id = "
        ));
        sql.bind(Value::Text(project_id.to_owned()))
            .push(" AND volume_id = ")
            .bind(Value::Text(volume_id.to_owned()));
        if let Some(before) = data_before {
            sql.push(&format!(" AND data_timestamp{c} < "))
                .bind(Value::Text(encode_ts(&before)?));
        }
        sql.push(&format!(
            " ORDER BY data_timestamp{c} DESC, created_at{c} DESC, id{c} DESC LIMIT 1"
        ));
        let row = sql
            .query()
            .fetch_optional(&self.pool)
            .await
            .map_err(MetaError::db(format!(
                "choosing the parent backup of volume {volume_id}"
            )))?;
        row.as_ref().map(decode).transpose()
    }

    /// Every non-deleted backup, of every project, whose status is one of
    /// `statuses` (the jobs a restarted service must clean up), oldest
    /// first.
    pub async fn backups_in_status(
        &self,
        statuses: &[&str],
    ) -> Result<Vec<BackupRecord>, MetaError> {
        if statuses.is_empty() {
            return Ok(Vec::new());
        }
        let c = self.collate();
        let mut sql = Sql::new(&format!(
            "SELECT {COLUMNS} FROM backups WHERE deleted = 0 AND status IN ("
        ));
        for (i, status) in statuses.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind(Value::Text((*status).to_owned()));
        }
        sql.push(&format!(") ORDER BY created_at{c} ASC, id{c} ASC"));
        let rows = sql
            .query()
            .fetch_all(&self.pool)
            .await
            .map_err(MetaError::db("listing backups by status"))?;
        rows.iter().map(decode).collect()
    }

    /// The quota usage of `project_id`: how many non-deleted backups it
    /// has (in any status) and their total size in GiB.
    pub async fn backup_usage(&self, project_id: &str) -> Result<(u64, i64), MetaError> {
        // PostgreSQL's SUM of BIGINT is NUMERIC: cast it back.
        let row = sqlx::query(
            "SELECT COUNT(*) AS n, CAST(COALESCE(SUM(size_gib), 0) AS BIGINT) AS gib \
             FROM backups WHERE project_id = $1 AND deleted = 0",
        )
        .bind(project_id)
        .fetch_one(&self.pool)
        .await
        .map_err(MetaError::db(format!(
            "summing the backups of project {project_id}"
        )))?;
        let gib: i64 = row
            .try_get("gib")
            .map_err(|e| MetaError::Corrupt(format!("backup usage: {e}")))?;
        Ok((count(&row, "backup usage")?, gib))
    }

    /// Records how a backup job ended: the objects it wrote and, for a
    /// failure, why. Touches only those columns (and `updated_at`), so it
    /// never undoes a status change made meanwhile. `NotFound` if the
    /// backup is missing or deleted.
    pub async fn set_backup_outcome(
        &self,
        id: &str,
        object_count: i64,
        fail_reason: Option<&str>,
    ) -> Result<(), MetaError> {
        let result = sqlx::query(
            "UPDATE backups SET object_count = $2, fail_reason = $3, updated_at = $4 \
             WHERE id = $1 AND deleted = 0",
        )
        .bind(id)
        .bind(object_count)
        .bind(fail_reason)
        .bind(encode_ts(&Utc::now())?)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!(
            "recording the outcome of backup {id}"
        )))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }

    /// Records which kind of backup the job made: its parent (`None` for
    /// a full backup) and, for a full backup made although an incremental
    /// was asked for, why.
    pub async fn set_backup_kind(
        &self,
        id: &str,
        parent_id: Option<&str>,
        full_reason: Option<&str>,
    ) -> Result<(), MetaError> {
        let result = sqlx::query(
            "UPDATE backups SET parent_id = $2, full_reason = $3, updated_at = $4 \
             WHERE id = $1 AND deleted = 0",
        )
        .bind(id)
        .bind(parent_id)
        .bind(full_reason)
        .bind(encode_ts(&Utc::now())?)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!("recording the kind of backup {id}")))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }

    /// Records the progress of the job running on backup `id` (bytes done
    /// of bytes in all). Leaves `updated_at` alone: progress is not a
    /// change of the backup. `NotFound` if there is no such backup.
    pub async fn set_backup_progress(
        &self,
        id: &str,
        done: i64,
        total: i64,
    ) -> Result<(), MetaError> {
        let result = sqlx::query(
            "UPDATE backups SET progress_done = $2, progress_total = $3 \
             WHERE id = $1 AND deleted = 0",
        )
        .bind(id)
        .bind(done)
        .bind(total)
        .execute(&self.pool)
        .await
        .map_err(MetaError::db(format!(
            "recording the progress of backup {id}"
        )))?;
        if result.rows_affected() == 0 {
            return Err(MetaError::NotFound);
        }
        Ok(())
    }
}
