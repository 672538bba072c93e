//! Query strings and bodies, validated as Cinder validates them.

use std::collections::{BTreeMap, HashMap};

use axum::body::Bytes;
use ember_meta::{ListQuery, SortDir, SortKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

use crate::context::RequestContext;
use crate::fault::{ApiError, ApiResult};

/// Cinder's `osapi_max_limit`: the default and largest page size.
pub const MAX_LIMIT: u64 = 1000;

/// Cinder's boolean spellings.
pub fn parse_bool(text: &str) -> Option<bool> {
    match text {
        "True" | "TRUE" | "true" | "1" | "ON" | "On" | "on" | "YES" | "Yes" | "yes" | "y" | "t" => {
            Some(true)
        }
        "False" | "FALSE" | "false" | "0" | "OFF" | "Off" | "off" | "NO" | "No" | "no" | "n"
        | "f" => Some(false),
        _ => None,
    }
}

/// A list request, parsed.
pub struct ListParams {
    /// Filters, sort and page for the database.
    pub query: ListQuery,
    /// `all_tenants` (admin).
    pub all_tenants: bool,
    /// `with_count` (3.45).
    pub with_count: bool,
    /// The page size asked for, if any.
    pub limit: Option<u64>,
    /// The query string minus `marker`, to build the next link.
    pub passthrough: Vec<(String, String)>,
}

/// Parses a list's query string. `filters` are the filter names this
/// collection accepts (Cinder's `resource_filters.json`); unknown ones are
/// an error from 3.31, ignored before.
pub fn list_params(
    ctx: &RequestContext,
    raw: &HashMap<String, String>,
    filters: &[&str],
) -> ApiResult<ListParams> {
    let mut query = ListQuery::default();
    let mut params = ListParams {
        query: ListQuery::default(),
        all_tenants: false,
        with_count: false,
        limit: None,
        passthrough: Vec::new(),
    };
    let bool_param = |key: &str, value: &str| {
        parse_bool(value).ok_or_else(|| {
            ApiError::bad_request(format!(
                "Invalid value '{value}' for {key}: must be a boolean"
            ))
        })
    };
    let number = |key: &str, value: &str| {
        value
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .map(|n| n as u64)
            .ok_or_else(|| {
                ApiError::bad_request(format!("{key} param must be an integer and not negative"))
            })
    };
    let (mut sort, mut sort_key, mut sort_dir) = (None, None, None);
    for (key, value) in raw {
        if key != "marker" {
            params.passthrough.push((key.clone(), value.clone()));
        }
        match key.as_str() {
            "limit" => params.limit = Some(number(key, value)?.min(MAX_LIMIT)),
            "offset" => query.offset = Some(number(key, value)?),
            "marker" => query.marker = Some(value.clone()),
            "sort" => sort = Some(value.clone()),
            "sort_key" => sort_key = Some(value.clone()),
            "sort_dir" => sort_dir = Some(value.clone()),
            "all_tenants" => params.all_tenants = bool_param(key, value)?,
            "with_count" if ctx.version.at_least(45) => params.with_count = bool_param(key, value)?,
            // Sent by clients, meaningless here.
            "project_id" | "cascade" | "force" => {}
            "name" | "display_name" if filters.contains(&"name") => {
                query.name = Some(value.clone())
            }
            "name~" | "display_name~" if filters.contains(&"name") && ctx.version.at_least(34) => {
                query.name_like = Some(value.clone())
            }
            "status" if filters.contains(&"status") => query.status = Some(value.clone()),
            "volume_id" if filters.contains(&"volume_id") => query.volume_id = Some(value.clone()),
            other if ctx.version.at_least(31) => {
                return Err(ApiError::bad_request(format!(
                    "Invalid filters {other} are found in query options."
                )));
            }
            _ => {}
        }
    }
    query.sort = sort_order(sort, sort_key, sort_dir)?;
    query.limit = Some(params.limit.unwrap_or(MAX_LIMIT));
    params.query = query;
    params.passthrough.sort();
    Ok(params)
}

fn sort_order(
    sort: Option<String>,
    key: Option<String>,
    dir: Option<String>,
) -> ApiResult<Vec<(SortKey, SortDir)>> {
    if sort.is_some() && (key.is_some() || dir.is_some()) {
        return Err(ApiError::bad_request("The 'sort_key' and 'sort_dir' parameters are deprecated and cannot be used with the 'sort' parameter."));
    }
    let direction = |text: &str| match text.to_ascii_lowercase().as_str() {
        "asc" => Ok(SortDir::Asc),
        "desc" => Ok(SortDir::Desc),
        other => Err(ApiError::bad_request(format!(
            "Unknown sort direction '{other}', must be 'desc' or 'asc'"
        ))),
    };
    let key_of = |text: &str| match text.trim() {
        "created_at" => Ok(SortKey::CreatedAt),
        "updated_at" => Ok(SortKey::UpdatedAt),
        "name" | "display_name" => Ok(SortKey::Name),
        "status" => Ok(SortKey::Status),
        "size" => Ok(SortKey::Size),
        "id" => Ok(SortKey::Id),
        "data_timestamp" => Ok(SortKey::DataTimestamp),
        other => Err(ApiError::bad_request(format!("Invalid sort key '{other}'"))),
    };
    let mut order = Vec::new();
    if let Some(sort) = sort {
        for part in sort.split(',').filter(|p| !p.trim().is_empty()) {
            let (k, d) = part.split_once(':').unwrap_or((part, "desc"));
            order.push((key_of(k)?, direction(d)?));
        }
    } else if key.is_some() || dir.is_some() {
        let k = key_of(key.as_deref().unwrap_or("created_at"))?;
        order.push((k, direction(dir.as_deref().unwrap_or("desc"))?));
    }
    Ok(order)
}

/// Parses a JSON body into `T`; any problem (bad JSON, unknown or
/// mistyped keys) is one 400.
pub fn parse_body<T: DeserializeOwned>(body: &Bytes) -> ApiResult<T> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("Invalid input received: {e}")))
}

/// Refuses a field the request's microversion does not have yet, as
/// Cinder's schemas do ("Additional properties are not allowed").
pub fn since<T>(ctx: &RequestContext, minor: u32, field: &str, value: &Option<T>) -> ApiResult<()> {
    if value.is_some() && !ctx.version.at_least(minor) {
        return Err(ApiError::bad_request(format!(
            "Invalid input received: Additional properties are not allowed ('{field}' was unexpected)"
        )));
    }
    Ok(())
}

/// A boolean field that also accepts Cinder's strings ("true", "1", …).
pub fn cinder_bool<'de, D: Deserializer<'de>>(deserializer: D) -> Result<bool, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Loose {
        Bool(bool),
        Text(String),
    }
    match Option::<Loose>::deserialize(deserializer)? {
        None => Ok(false),
        Some(Loose::Bool(b)) => Ok(b),
        Some(Loose::Text(t)) => parse_bool(&t)
            .ok_or_else(|| serde::de::Error::custom(format!("'{t}' is not a valid boolean"))),
    }
}

/// Metadata: string keys (1–255 of Cinder's characters) to strings ≤ 255.
pub fn metadata(value: Option<BTreeMap<String, String>>) -> ApiResult<BTreeMap<String, String>> {
    let value = value.unwrap_or_default();
    for (key, val) in &value {
        let key_ok = (1..=255).contains(&key.len())
            && key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_:. /".contains(c));
        if !key_ok || val.len() > 255 {
            return Err(ApiError::bad_request(format!(
                "Invalid input received: invalid metadata item '{key}'"
            )));
        }
    }
    Ok(value)
}

/// A name or description: at most 255 characters.
pub fn text(field: &str, value: Option<String>) -> ApiResult<Option<String>> {
    match value {
        Some(v) if v.chars().count() > 255 => Err(ApiError::bad_request(format!(
            "Invalid input received: {field} is longer than 255 characters"
        ))),
        other => Ok(other),
    }
}
