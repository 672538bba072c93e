//! The JSON views of Cinder's API, with fields gated by microversion
//! exactly where Cinder gates them.

use chrono::{DateTime, Utc};
use ember_meta::{BackupRecord, SnapshotRecord, VolumeRecord};
use ember_service::ServiceStatus;
use serde_json::{json, Map, Value};

use crate::context::{RequestContext, MAX_VERSION, MIN_VERSION};

/// Cinder's timestamp format (no zone suffix).
pub fn timestamp(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S%.6f").to_string()
}

fn links(ctx: &RequestContext, collection: &str, id: &str) -> Value {
    json!([
        {"href": ctx.link(&format!("{collection}/{id}")), "rel": "self"},
        {"href": ctx.bookmark(&format!("{collection}/{id}")), "rel": "bookmark"},
    ])
}

/// `{id, name, links}`: the summary every collection uses.
pub fn summary(ctx: &RequestContext, collection: &str, id: &str, name: &Option<String>) -> Value {
    json!({"id": id, "name": name, "links": links(ctx, collection, id)})
}

/// The detail view of a backup.
pub fn backup_detail(
    ctx: &RequestContext,
    b: &BackupRecord,
    has_dependents: bool,
    progress: Option<(u64, u64)>,
) -> Value {
    let mut view = json!({
        "id": b.id,
        "status": b.status,
        "size": b.size_gib,
        "object_count": b.object_count,
        "availability_zone": b.availability_zone,
        "container": b.container,
        "created_at": timestamp(&b.created_at),
        "updated_at": timestamp(&b.updated_at),
        "name": b.name,
        "description": b.description,
        "fail_reason": b.fail_reason,
        "volume_id": b.volume_id,
        "links": links(ctx, "backups", &b.id),
        "is_incremental": b.parent_id.is_some(),
        "has_dependent_backups": has_dependents,
        "snapshot_id": b.snapshot_id,
        "data_timestamp": timestamp(&b.data_timestamp),
    });
    let fields = view.as_object_mut().expect("a JSON object");
    if ctx.version.at_least(18) && ctx.caller.is_admin {
        fields.insert(
            "os-backup-project-attr:project_id".into(),
            json!(b.project_id),
        );
    }
    if ctx.version.at_least(43) {
        fields.insert("metadata".into(), json!(b.metadata));
    }
    if ctx.version.at_least(56) && ctx.caller.is_admin {
        fields.insert("user_id".into(), json!(b.user_id));
    }
    // Ember's addition, present only when an incremental was asked for and
    // a full backup made (the Ceph driver says why; Cinder stays silent).
    if let Some(reason) = &b.full_reason {
        fields.insert("full_backup_reason".into(), json!(reason));
    }
    // Ember's addition, present only while a job runs: clients ignore it.
    if let Some((done, total)) = progress {
        fields.insert(
            "progress".into(),
            json!({"bytes_done": done, "bytes_total": total}),
        );
    }
    view
}

/// The detail view of a volume (`with_admin_fields`: not on create
/// responses, which in Cinder carry no `os-vol-*` keys).
pub fn volume_detail(ctx: &RequestContext, v: &VolumeRecord, with_admin_fields: bool) -> Value {
    let mut view = json!({
        "id": v.id,
        "status": v.status,
        "size": v.size_gib,
        "availability_zone": v.availability_zone,
        "created_at": timestamp(&v.created_at),
        "updated_at": timestamp(&v.updated_at),
        "name": v.name,
        "description": v.description,
        "volume_type": v.volume_type,
        "snapshot_id": v.snapshot_id,
        "source_volid": null,
        "metadata": v.metadata,
        "links": links(ctx, "volumes", &v.id),
        "user_id": v.user_id,
        "bootable": "false",
        "encrypted": false,
        "replication_status": null,
        "consistencygroup_id": null,
        "multiattach": false,
        "attachments": [],
    });
    let fields = view.as_object_mut().expect("a JSON object");
    if with_admin_fields && ctx.caller.is_admin {
        fields.insert("migration_status".into(), Value::Null);
        fields.insert("os-vol-tenant-attr:tenant_id".into(), json!(v.project_id));
        fields.insert(
            "os-vol-host-attr:host".into(),
            json!(format!("ember@file#{}", v.availability_zone)),
        );
        fields.insert("os-vol-mig-status-attr:migstat".into(), Value::Null);
        fields.insert("os-vol-mig-status-attr:name_id".into(), Value::Null);
    }
    gate(fields, ctx, 13, "group_id", Value::Null);
    if ctx.caller.is_admin {
        gate(fields, ctx, 21, "provider_id", Value::Null);
    }
    gate(fields, ctx, 48, "shared_targets", json!(false));
    gate(fields, ctx, 48, "service_uuid", Value::Null);
    if ctx.caller.is_admin {
        gate(fields, ctx, 61, "cluster_name", Value::Null);
    }
    gate(fields, ctx, 63, "volume_type_id", Value::Null);
    gate(fields, ctx, 65, "consumes_quota", json!(true));
    view
}

/// The detail view of a snapshot.
pub fn snapshot_detail(ctx: &RequestContext, s: &SnapshotRecord) -> Value {
    let mut view = json!({
        "id": s.id,
        "status": s.status,
        "size": s.size_gib,
        "created_at": timestamp(&s.created_at),
        "updated_at": timestamp(&s.updated_at),
        "name": s.name,
        "description": s.description,
        "volume_id": s.volume_id,
        "metadata": s.metadata,
        "links": links(ctx, "snapshots", &s.id),
    });
    let fields = view.as_object_mut().expect("a JSON object");
    if ctx.caller.is_admin {
        fields.insert(
            "os-extended-snapshot-attributes:project_id".into(),
            json!(s.project_id),
        );
        fields.insert(
            "os-extended-snapshot-attributes:progress".into(),
            json!("100%"),
        );
    }
    gate(fields, ctx, 14, "group_snapshot_id", Value::Null);
    gate(fields, ctx, 41, "user_id", json!(s.user_id));
    gate(fields, ctx, 65, "consumes_quota", json!(true));
    view
}

/// One `os-services` row.
pub fn service(ctx: &RequestContext, s: &ServiceStatus) -> Value {
    let mut view = json!({
        "binary": s.binary,
        "host": s.host,
        "zone": s.zone,
        "status": if s.disabled { "disabled" } else { "enabled" },
        "state": if s.up { "up" } else { "down" },
        "updated_at": timestamp(&s.updated_at),
        "disabled_reason": s.disabled_reason,
    });
    let fields = view.as_object_mut().expect("a JSON object");
    gate(fields, ctx, 7, "cluster", Value::Null);
    if s.binary == "cinder-volume" {
        fields.insert("replication_status".into(), json!("disabled"));
        fields.insert("active_backend_id".into(), Value::Null);
        fields.insert("frozen".into(), json!(false));
        gate(
            fields,
            ctx,
            49,
            "backend_state",
            json!(if s.up { "up" } else { "down" }),
        );
    }
    view
}

fn gate(
    fields: &mut Map<String, Value>,
    ctx: &RequestContext,
    minor: u32,
    key: &str,
    value: Value,
) {
    if ctx.version.at_least(minor) {
        fields.insert(key.into(), value);
    }
}

/// The version document served at `/`, `/v3` and `/v3/`.
pub fn versions(host_url: &str) -> Value {
    json!({"versions": [{
        "id": "v3.0",
        "status": "CURRENT",
        "version": format!("3.{}", MAX_VERSION.0),
        "min_version": format!("3.{}", MIN_VERSION.0),
        "updated": "2023-08-31T00:00:00Z",
        "links": [
            {"rel": "describedby", "type": "text/html", "href": "https://docs.openstack.org/"},
            {"rel": "self", "href": format!("{host_url}/v3/")},
        ],
        "media-types": [{"base": "application/json", "type": "application/vnd.openstack.volume+json;version=3"}],
    }]})
}
