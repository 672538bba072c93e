//! Response bodies shared by the handlers: lists (items, `count` from
//! 3.45, the `next` link) and the 202 of asynchronous requests.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::context::RequestContext;
pub use crate::params::list_params;
use crate::params::MAX_LIMIT;

/// `{collection: items, collection_links?: [next], count?}`. A `next` link
/// is given when the page is full, as Cinder does.
pub fn paged(
    ctx: &RequestContext,
    collection: &str,
    path: &str,
    items: Vec<Value>,
    ids: Vec<String>,
    params: &crate::params::ListParams,
    total: u64,
) -> Value {
    let full = items.len() as u64 == params.limit.unwrap_or(MAX_LIMIT);
    let mut body = json!({ collection: items });
    if full {
        if let Some(last) = ids.last() {
            let mut query: Vec<String> = params
                .passthrough
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            query.push(format!("marker={}", encode(last)));
            body[format!("{collection}_links")] =
                json!([{"rel": "next", "href": format!("{}?{}", ctx.link(path), query.join("&"))}]);
        }
    }
    if params.with_count {
        body["count"] = json!(total);
    }
    body
}

/// Percent-encodes a query component.
fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `202 Accepted` with a JSON body: Cinder's answer to create and restore.
pub fn accepted(body: Value) -> Response {
    (StatusCode::ACCEPTED, Json(body)).into_response()
}
