//! `/v3/{project}/volumes…` and `/snapshots…`: what backups need of
//! Cinder's volume API.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use ember_service::{Ember, SnapshotCreate, VolumeCreate, VolumeUpdate};
use serde::{Deserialize, Deserializer};
use serde_json::{json, Value};

use crate::backups::uuid_field;
use crate::context::RequestContext;
use crate::fault::{ApiError, ApiResult};
use crate::lists::{accepted, list_params, paged};
use crate::params::{cinder_bool, metadata, parse_body, since, text};
use crate::views::{snapshot_detail, summary, volume_detail};

/// Filters accepted on volume and snapshot lists.
const FILTERS: [&str; 2] = ["name", "status"];
/// Filters accepted on snapshot lists.
const SNAPSHOT_FILTERS: [&str; 3] = ["name", "status", "volume_id"];

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateBody {
    volume: CreateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateFields {
    #[serde(default, deserialize_with = "size")]
    size: Option<i64>,
    name: Option<String>,
    description: Option<String>,
    // Cinder's v1 names, still accepted.
    display_name: Option<String>,
    display_description: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
    availability_zone: Option<String>,
    volume_type: Option<String>,
    snapshot_id: Option<String>,
    backup_id: Option<String>,
    // Sent as null by cinderclient and the SDK; a value asks for what
    // Ember does not do.
    #[serde(rename = "imageRef")]
    image_ref: Option<String>,
    source_volid: Option<String>,
    consistencygroup_id: Option<String>,
    group_id: Option<String>,
    #[serde(default, deserialize_with = "cinder_bool")]
    multiattach: bool,
    scheduler_hints: Option<Value>,
}

/// A size given as a number or a numeric string.
fn size<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i64>, D::Error> {
    match Option::<Value>::deserialize(deserializer)? {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_i64()
            .map(Some)
            .ok_or_else(|| serde::de::Error::custom("size must be an integer")),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| serde::de::Error::custom("size must be an integer")),
        Some(_) => Err(serde::de::Error::custom("size must be an integer")),
    }
}

/// `POST /volumes`: 202 with the volume (no admin fields, as Cinder).
pub async fn create(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    let CreateBody { volume: f } = parse_body(&body)?;
    since(&ctx, 47, "backup_id", &f.backup_id)?;
    let unsupported = [
        ("imageRef", &f.image_ref),
        ("source_volid", &f.source_volid),
        ("consistencygroup_id", &f.consistencygroup_id),
        ("group_id", &f.group_id),
    ];
    if let Some((field, _)) = unsupported.iter().find(|(_, v)| v.is_some()) {
        return Err(ApiError::bad_request(format!(
            "Invalid input received: Ember volumes cannot be created with {field}"
        )));
    }
    if f.multiattach {
        return Err(ApiError::bad_request(
            "Invalid input received: multiattach volumes are not supported",
        ));
    }
    let _ = f.scheduler_hints;
    for (field, id) in [("snapshot_id", &f.snapshot_id), ("backup_id", &f.backup_id)] {
        if let Some(id) = id {
            uuid_field(field, id)?;
        }
    }
    if f.size.is_none() && f.snapshot_id.is_none() && f.backup_id.is_none() {
        return Err(ApiError::bad_request(
            "Invalid input received: 'size' is a required property",
        ));
    }
    let request = VolumeCreate {
        size_gib: f.size.unwrap_or(0),
        name: text("name", f.name.or(f.display_name))?,
        description: text("description", f.description.or(f.display_description))?,
        metadata: metadata(f.metadata)?,
        availability_zone: text("availability_zone", f.availability_zone)?,
        volume_type: text("volume_type", f.volume_type)?,
        backup_id: f.backup_id,
        snapshot_id: f.snapshot_id,
    };
    let volume = ember.create_volume(&ctx.caller, request).await?;
    Ok(accepted(
        json!({"volume": volume_detail(&ctx, &volume, false)}),
    ))
}

/// `GET /volumes`: summaries.
pub async fn list(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list_volumes(ember, ctx, raw, false).await
}

/// `GET /volumes/detail`: details.
pub async fn list_detail(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    list_volumes(ember, ctx, raw, true).await
}

async fn list_volumes(
    ember: Arc<Ember>,
    ctx: RequestContext,
    raw: HashMap<String, String>,
    detail: bool,
) -> ApiResult<Json<Value>> {
    let params = list_params(&ctx, &raw, &FILTERS)?;
    let page = ember
        .list_volumes(&ctx.caller, params.query.clone(), params.all_tenants)
        .await?;
    let items = page
        .items
        .iter()
        .map(|v| {
            if detail {
                volume_detail(&ctx, v, true)
            } else {
                summary(&ctx, "volumes", &v.id, &v.name)
            }
        })
        .collect();
    let ids = page.items.iter().map(|v| v.id.clone()).collect();
    let path = if detail { "volumes/detail" } else { "volumes" };
    Ok(Json(paged(
        &ctx, "volumes", path, items, ids, &params, page.total,
    )))
}

/// `GET /volumes/{id}`.
pub async fn show(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let volume = ember.get_volume(&ctx.caller, &id).await?;
    Ok(Json(json!({"volume": volume_detail(&ctx, &volume, true)})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateBody {
    volume: UpdateFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateFields {
    name: Option<String>,
    description: Option<String>,
    display_name: Option<String>,
    display_description: Option<String>,
    metadata: Option<BTreeMap<String, String>>,
}

/// `PUT /volumes/{id}`: 200 with the volume.
pub async fn update(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<Value>> {
    let UpdateBody { volume: f } = parse_body(&body)?;
    let update = VolumeUpdate {
        name: text("name", f.name.or(f.display_name))?,
        description: text("description", f.description.or(f.display_description))?,
        metadata: f.metadata.map(|m| metadata(Some(m))).transpose()?,
    };
    let volume = ember.update_volume(&ctx.caller, &id, update).await?;
    Ok(Json(json!({"volume": volume_detail(&ctx, &volume, true)})))
}

/// `DELETE /volumes/{id}`: 202.
pub async fn delete(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ember.delete_volume(&ctx.caller, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotBody {
    snapshot: SnapshotFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SnapshotFields {
    volume_id: String,
    name: Option<String>,
    description: Option<String>,
    display_name: Option<String>,
    display_description: Option<String>,
    #[serde(default, deserialize_with = "cinder_bool")]
    force: bool,
    metadata: Option<BTreeMap<String, String>>,
}

/// `POST /snapshots`: 202 with the snapshot.
pub async fn create_snapshot(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    let SnapshotBody { snapshot: f } = parse_body(&body)?;
    uuid_field("volume_id", &f.volume_id)?;
    let request = SnapshotCreate {
        volume_id: f.volume_id,
        name: text("name", f.name.or(f.display_name))?,
        description: text("description", f.description.or(f.display_description))?,
        force: f.force,
        metadata: metadata(f.metadata)?,
    };
    let snapshot = ember.create_snapshot(&ctx.caller, request).await?;
    Ok(accepted(
        json!({"snapshot": snapshot_detail(&ctx, &snapshot)}),
    ))
}

/// `GET /snapshots` and `/snapshots/detail` (both detailed, as Cinder's v3).
pub async fn list_snapshots(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let params = list_params(&ctx, &raw, &SNAPSHOT_FILTERS)?;
    let page = ember
        .list_snapshots(&ctx.caller, params.query.clone(), params.all_tenants)
        .await?;
    let items = page
        .items
        .iter()
        .map(|s| snapshot_detail(&ctx, s))
        .collect();
    let ids = page.items.iter().map(|s| s.id.clone()).collect();
    Ok(Json(paged(
        &ctx,
        "snapshots",
        "snapshots/detail",
        items,
        ids,
        &params,
        page.total,
    )))
}

/// `GET /snapshots/{id}`.
pub async fn show_snapshot(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    let snapshot = ember.get_snapshot(&ctx.caller, &id).await?;
    Ok(Json(json!({"snapshot": snapshot_detail(&ctx, &snapshot)})))
}

/// `DELETE /snapshots/{id}`: 202.
pub async fn delete_snapshot(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    ember.delete_snapshot(&ctx.caller, &id).await?;
    Ok(StatusCode::ACCEPTED)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManageBody {
    volume: ManageFields,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ManageFields {
    #[serde(rename = "ref")]
    reference: ManageRef,
    host: Option<String>,
    name: Option<String>,
    description: Option<String>,
    availability_zone: Option<String>,
    volume_type: Option<String>,
    #[serde(default, deserialize_with = "cinder_bool")]
    bootable: bool,
    metadata: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
struct ManageRef {
    #[serde(rename = "source-name")]
    source_name: String,
}

/// `POST /os-volume-manage`: brings existing data under management
/// (`ref.source-name`: a path, or with RBD volumes an image of `rbd_pool`
/// or `rbd:POOL/IMAGE`); 202 with the volume.
pub async fn manage(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    body: Bytes,
) -> ApiResult<Response> {
    let ManageBody { volume: f } = parse_body(&body)?;
    let _ = (
        f.host,
        f.availability_zone,
        f.volume_type,
        f.bootable,
        f.description,
        f.metadata,
    );
    let volume = ember
        .manage_volume(&ctx.caller, &f.reference.source_name, text("name", f.name)?)
        .await?;
    Ok(accepted(
        json!({"volume": volume_detail(&ctx, &volume, false)}),
    ))
}
