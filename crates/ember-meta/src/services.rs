//! The `services` table: heartbeats of running Ember services.

use chrono::Utc;
use sqlx::any::AnyRow;

use crate::codec::{encode_ts, Fields};
use crate::{Database, MetaError, ServiceRecord};

const COLUMNS: &str =
    "host, service_binary, zone, disabled, disabled_reason, created_at, updated_at";

fn decode(row: &AnyRow) -> Result<ServiceRecord, MetaError> {
    let f = Fields::new(row, "service");
    Ok(ServiceRecord {
        host: f.text("host")?,
        binary: f.text("service_binary")?,
        zone: f.text("zone")?,
        disabled: f.flag("disabled")?,
        disabled_reason: f.opt_text("disabled_reason")?,
        created_at: f.ts("created_at")?,
        updated_at: f.ts("updated_at")?,
    })
}

impl Database {
    /// Records that service `binary` runs on `host` in `zone`, now: creates
    /// the service on its first heartbeat, later ones update its zone and
    /// `updated_at` (its `created_at` and disabled state stay). Returns the
    /// stored record.
    pub async fn heartbeat(
        &self,
        host: &str,
        binary: &str,
        zone: &str,
    ) -> Result<ServiceRecord, MetaError> {
        let now = encode_ts(&Utc::now())?;
        let row = sqlx::query(&format!(
            "INSERT INTO services (host, service_binary, zone, disabled, disabled_reason, \
             created_at, updated_at) VALUES ($1, $2, $3, 0, NULL, $4, $4) \
             ON CONFLICT (host, service_binary) \
             DO UPDATE SET zone = excluded.zone, updated_at = excluded.updated_at \
             RETURNING {COLUMNS}"
        ))
        .bind(host)
        .bind(binary)
        .bind(zone)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(MetaError::db(format!(
            "recording the heartbeat of {binary} on {host}"
        )))?;
        decode(&row)
    }

    /// Every service that ever sent a heartbeat, by host then binary.
    pub async fn list_services(&self) -> Result<Vec<ServiceRecord>, MetaError> {
        let c = self.collate();
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM services ORDER BY host{c}, service_binary{c}"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(MetaError::db("listing services"))?;
        rows.iter().map(decode).collect()
    }
}
