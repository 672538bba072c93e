//! `/v3/{project}/backups…`: Cinder's backup API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use ember_meta::BackupRecord;
use ember_service::{BackupCreate, BackupUpdate, Ember, ExportRecord, RestoreRequest};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::context::RequestContext;
use crate::fault::{ApiError, ApiResult};
use crate::lists::{accepted, list_params, paged};
use crate::params::{cinder_bool, metadata, parse_body, since, text};
use crate::views::{backup_detail, summary};

/// Filters Cinder allows on backup lists (`resource_filters.json`).
const BACKUP_FILTERS: [&str; 3] = ["name", "status", "volume_id"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    backup: CreateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    volume_id: String,
    container: Option<String>,
    name: Option<String>,
    description: Option<String>,
    #[serde(default, deserialize_with = "cinder_bool")]
    incremental: bool,
    #[serde(default, deserialize_with = "cinder_bool")]
    force: bool,
    snapshot_id: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    availability_zone: Option<String>,
}

/// `POST /backups`: 202 with the summary.
pub async fn create(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    let CreateBody { backup: fields } = parse_body(&body)?;
    since(&ctx, 43, "metadata", &fields.metadata)?;
    since(&ctx, 51, "availability_zone", &fields.availability_zone)?;
    uuid_field("volume_id", &fields.volume_id)?;
    if let Some(snapshot) = &fields.snapshot_id {
        uuid_field("snapshot_id", snapshot)?;
    }
    let request = BackupCreate {
        volume_id: fields.volume_id,
        container: text("container", fields.container)?,
        name: text("name", fields.name)?,
        description: text("description", fields.description)?,
        incremental: fields.incremental,
        force: fields.force,
        snapshot_id: fields.snapshot_id,
        metadata: metadata(fields.metadata)?,
        availability_zone: text("availability_zone", fields.availability_zone)?,
    };
    let backup = ember.create_backup(&ctx.caller, request).await?;
    Ok(accepted(
        json!({"backup": summary(&ctx, "backups", &backup.id, &backup.name)}),
    ))
}

/// `GET /backups`: summaries.
pub async fn list(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list_backups(ember, ctx, raw, false).await
}

/// `GET /backups/detail`: details.
pub async fn list_detail(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list_backups(ember, ctx, raw, true).await
}

async fn list_backups(
    ember: Arc<Ember>,
    ctx: RequestContext,
    raw: HashMap<String, String>,
    detail: bool,
) -> ApiResult<Json<Value>> {
    let params = list_params(&ctx, &raw, &BACKUP_FILTERS)?;
    let page = ember
        .list_backups(&ctx.caller, params.query.clone(), params.all_tenants)
        .await?;
    let mut items = Vec::with_capacity(page.items.len());
    for backup in &page.items {
        items.push(if detail {
            detail_view(&ember, &ctx, backup).await?
        } else {
            summary(&ctx, "backups", &backup.id, &backup.name)
        });
    }
    let ids = page.items.iter().map(|b| b.id.clone()).collect();
    let path = if detail { "backups/detail" } else { "backups" };
    Ok(Json(paged(
        &ctx, "backups", path, items, ids, &params, page.total,
    )))
}

async fn detail_view(
    ember: &Ember,
    ctx: &RequestContext,
    backup: &BackupRecord,
) -> ApiResult<Value> {
    let dependents = ember.has_dependent_backups(&backup.id).await?;
    Ok(backup_detail(
        ctx,
        backup,
        dependents,
        ember.progress(&backup.id),
    ))
}

/// `GET /backups/{id}`.
pub async fn show(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let backup = ember.get_backup(&ctx.caller, &id).await?;
    Ok(Json(
        json!({"backup": detail_view(&ember, &ctx, &backup).await?}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    backup: UpdateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFields {
    name: Option<String>,
    description: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

/// `PUT /backups/{id}` (3.9): 200 with the summary.
pub async fn update(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    if !ctx.version.at_least(9) {
        return Err(ApiError::not_found("The resource could not be found."));
    }
    let UpdateBody { backup: fields } = parse_body(&body)?;
    since(&ctx, 43, "metadata", &fields.metadata)?;
    let update = BackupUpdate {
        name: text("name", fields.name)?,
        description: text("description", fields.description)?,
        metadata: fields.metadata.map(|m| metadata(Some(m))).transpose()?,
    };
    let backup = ember.update_backup(&ctx.caller, &id, update).await?;
    Ok(Json(
        json!({"backup": summary(&ctx, "backups", &backup.id, &backup.name)}),
    ))
}

/// `DELETE /backups/{id}`: 202.
pub async fn delete(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ember.delete_backup(&ctx.caller, &id, false).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RestoreBody {
    restore: Option<RestoreFields>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RestoreFields {
    volume_id: Option<String>,
    name: Option<String>,
}

/// `POST /backups/{id}/restore`: 202 with `{backup_id, volume_id, volume_name}`.
pub async fn restore(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Response> {
    let RestoreBody { restore } = parse_body(&body)?;
    let fields = restore.unwrap_or_default();
    if let Some(volume) = &fields.volume_id {
        uuid_field("volume_id", volume)?;
    }
    let request = RestoreRequest {
        volume_id: fields.volume_id,
        name: text("name", fields.name)?,
    };
    let (backup, volume) = ember.restore_backup(&ctx.caller, &id, request).await?;
    let body = json!({"restore": {"backup_id": backup.id, "volume_id": volume.id, "volume_name": volume.name}});
    Ok(accepted(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ActionBody {
    #[serde(rename = "os-force_delete", default, deserialize_with = "present")]
    force_delete: bool,
    #[serde(rename = "os-reset_status")]
    reset_status: Option<ResetStatus>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResetStatus {
    status: String,
}

/// Whether a key is present, whatever its value (`{"os-force_delete": null}` counts).
fn present<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    serde::de::IgnoredAny::deserialize(deserializer).map(|_| true)
}

/// `POST /backups/{id}/action`: `os-force_delete` or `os-reset_status`; 202.
pub async fn action(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<StatusCode> {
    let action: ActionBody = parse_body(&body)?;
    match (action.force_delete, action.reset_status) {
        (true, None) => ember.delete_backup(&ctx.caller, &id, true).await?,
        (false, Some(reset)) => ember.reset_backup_status(&ctx.caller, &id, &reset.status).await?,
        _ => return Err(ApiError::bad_request("Invalid input received: exactly one of os-force_delete and os-reset_status is expected")),
    }
    Ok(StatusCode::ACCEPTED)
}

/// `GET /backups/{id}/export_record`.
pub async fn export_record(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let record = ember.export_backup(&ctx.caller, &id).await?;
    Ok(Json(
        json!({"backup-record": {"backup_service": record.backup_service, "backup_url": record.backup_url}}),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportBody {
    #[serde(rename = "backup-record")]
    record: ImportFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ImportFields {
    backup_service: String,
    backup_url: String,
}

/// `POST /backups/import_record`: 201 with the summary.
pub async fn import_record(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    let ImportBody { record } = parse_body(&body)?;
    let backup = ember
        .import_backup(
            &ctx.caller,
            ExportRecord {
                backup_service: record.backup_service,
                backup_url: record.backup_url,
            },
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"backup": summary(&ctx, "backups", &backup.id, &backup.name)})),
    )
        .into_response())
}

/// Refuses a value that is not a UUID, as Cinder's schemas do.
pub fn uuid_field(field: &str, value: &str) -> ApiResult<()> {
    uuid::Uuid::parse_str(value).map(|_| ()).map_err(|_| {
        ApiError::bad_request(format!(
            "Invalid input for field/attribute {field}. Value: {value}. '{value}' is not a 'uuid'"
        ))
    })
}
