//! Version discovery, `os-services` and `limits`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use ember_service::Ember;
use serde_json::{json, Value};

use crate::context::RequestContext;
use crate::fault::ApiResult;
use crate::views;

fn host_url(headers: &HeaderMap) -> String {
    let host = headers
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    format!("http://{host}")
}

/// `GET /`: 300 Multiple Choices with the version document.
pub async fn root(headers: HeaderMap) -> Response {
    (
        StatusCode::MULTIPLE_CHOICES,
        Json(views::versions(&host_url(&headers))),
    )
        .into_response()
}

/// `GET /v3` and `/v3/`: the same document, 200.
pub async fn v3(headers: HeaderMap) -> Json<Value> {
    Json(views::versions(&host_url(&headers)))
}

/// `GET /os-services[?binary=…&host=…]`.
pub async fn services(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
    Query(raw): Query<HashMap<String, String>>,
) -> ApiResult<Json<Value>> {
    let rows: Vec<Value> = ember
        .list_services()
        .await?
        .iter()
        .filter(|s| raw.get("binary").is_none_or(|b| *b == s.binary))
        .filter(|s| raw.get("host").is_none_or(|h| *h == s.host))
        .map(|s| views::service(&ctx, s))
        .collect();
    Ok(Json(json!({"services": rows})))
}

/// `GET /limits`: the backup quotas and what the project uses.
pub async fn limits(
    State(ember): State<Arc<Ember>>,
    ctx: RequestContext,
) -> ApiResult<Json<Value>> {
    let (count, gigabytes) = ember
        .database()
        .backup_usage(&ctx.caller.project_id)
        .await
        .map_err(ember_service::ServiceError::from)?;
    let config = ember.config();
    Ok(Json(json!({"limits": {"rate": [], "absolute": {
        "maxTotalBackups": config.quota_backups,
        "maxTotalBackupGigabytes": config.quota_backup_gigabytes,
        "totalBackupsUsed": count,
        "totalBackupGigabytesUsed": gigabytes,
    }}})))
}
