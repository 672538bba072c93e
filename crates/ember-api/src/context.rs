//! Per-request context: request id, microversion, caller and project,
//! taken from the headers and the URL (with or without the project id, as
//! Cinder routes both), and the headers every response carries.

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, Uri};
use axum::response::{IntoResponse, Response};
use ember_service::Caller;

use crate::fault::ApiError;

/// Lowest microversion served.
pub const MIN_VERSION: Version = Version(0);
/// Highest microversion served (Cinder's).
pub const MAX_VERSION: Version = Version(71);
/// Collections that may follow `/v3/` directly (a project-less URL);
/// anything else in that place is a project id.
const COLLECTIONS: [&str; 9] = [
    "backups",
    "volumes",
    "snapshots",
    "os-services",
    "limits",
    "os-quota-sets",
    "os-volume-manage",
    "types",
    "extensions",
];

/// A 3.x microversion, by its minor number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version(pub u32);

impl Version {
    /// Whether the request asked for at least 3.`minor`.
    pub fn at_least(self, minor: u32) -> bool {
        self.0 >= minor
    }
}

/// What a handler knows about the request.
#[derive(Clone, Debug)]
pub struct RequestContext {
    /// Who asks, in which project.
    pub caller: Caller,
    /// The negotiated microversion.
    pub version: Version,
    /// `scheme://host` the client used, for links.
    pub host_url: String,
    /// Whether the URL carried the project id (links then carry it too).
    pub project_in_url: bool,
}

impl RequestContext {
    /// `…/v3/{project}/{path}`, the `self` link of a resource.
    pub fn link(&self, path: &str) -> String {
        if self.project_in_url {
            format!("{}/v3/{}/{path}", self.host_url, self.caller.project_id)
        } else {
            format!("{}/v3/{path}", self.host_url)
        }
    }

    /// `…/{project}/{path}`, the `bookmark` link of a resource.
    pub fn bookmark(&self, path: &str) -> String {
        format!("{}/{}/{path}", self.host_url, self.caller.project_id)
    }
}

/// Parses the `OpenStack-API-Version` header: absent means 3.0; garbage
/// is 400; a version outside what is served is 406.
fn negotiate(headers: &HeaderMap) -> Result<Option<Version>, ApiError> {
    let Some(value) = headers.get("openstack-api-version") else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let Some(requested) = text.strip_prefix("volume").map(str::trim) else {
        return Ok(None);
    };
    if requested == "latest" {
        return Ok(Some(MAX_VERSION));
    }
    let bad = || {
        ApiError::bad_request(format!("API Version String {requested} is of invalid format. Must be of format MajorNum.MinorNum."))
    };
    let (major, minor) = requested.split_once('.').ok_or_else(bad)?;
    let (major, minor): (u32, u32) = (
        major.parse().map_err(|_| bad())?,
        minor.parse().map_err(|_| bad())?,
    );
    if major != 3 || minor > MAX_VERSION.0 {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            format!("Version {requested} is not supported by the API. Minimum is 3.{} and maximum is 3.{}.", MIN_VERSION.0, MAX_VERSION.0),
        ));
    }
    Ok(Some(Version(minor)))
}

/// The caller from noauth headers: `X-Auth-Token: user:project`, else
/// `x-user-id`/`x-project-id`. Every noauth caller is admin, as in Cinder.
fn caller(headers: &HeaderMap, url_project: Option<&str>) -> Option<Caller> {
    let header = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let token = header("x-auth-token").unwrap_or_default();
    let (token_user, token_project) = match token.split_once(':') {
        Some((user, project)) => (Some(user.to_string()), Some(project.to_string())),
        None if !token.is_empty() && token != "notused" => {
            (Some(token.clone()), Some(token.clone()))
        }
        None => (None, None),
    };
    let project = url_project
        .map(str::to_string)
        .or(token_project)
        .or_else(|| header("x-project-id"))
        .filter(|p| !p.is_empty())?;
    let user = token_user
        .or_else(|| header("x-user-id"))
        .unwrap_or_else(|| project.clone());
    Some(Caller {
        project_id: project,
        user_id: user,
        is_admin: true,
    })
}

/// Splits `/v3/{project}/rest` into the project and `/v3/rest`.
fn strip_project(path: &str) -> (Option<String>, String) {
    let Some(rest) = path.strip_prefix("/v3/") else {
        return (None, path.to_string());
    };
    let (first, tail) = rest.split_once('/').unwrap_or((rest, ""));
    if first.is_empty() || COLLECTIONS.contains(&first) {
        return (None, path.to_string());
    }
    (
        Some(first.to_string()),
        format!("/v3/{tail}").trim_end_matches('/').to_string(),
    )
}

/// The middleware around the whole router: request id, version
/// negotiation, caller and project, URL rewrite, response headers.
pub async fn with_context(mut request: Request, next: axum::middleware::Next) -> Response {
    let request_id = format!("req-{}", uuid::Uuid::new_v4());
    let negotiated = negotiate(request.headers());
    let mut response = match negotiated {
        Err(error) => error.into_response(),
        Ok(version) => {
            let path = request.uri().path().to_string();
            let (url_project, rewritten) = strip_project(&path);
            let host = request
                .headers()
                .get("host")
                .and_then(|h| h.to_str().ok())
                .unwrap_or("localhost")
                .to_string();
            if let Some(caller) = caller(request.headers(), url_project.as_deref()) {
                request.extensions_mut().insert(RequestContext {
                    caller,
                    version: version.unwrap_or(MIN_VERSION),
                    host_url: format!("http://{host}"),
                    project_in_url: url_project.is_some(),
                });
            }
            if url_project.is_some() {
                let query = request
                    .uri()
                    .query()
                    .map(|q| format!("?{q}"))
                    .unwrap_or_default();
                if let Ok(uri) = format!("{rewritten}{query}").parse::<Uri>() {
                    *request.uri_mut() = uri;
                }
            }
            let mut response = next.run(request).await;
            if let Some(Version(minor)) = version {
                let value = format!("volume 3.{minor}");
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response
                        .headers_mut()
                        .insert("openstack-api-version", value);
                }
                response
                    .headers_mut()
                    .insert("vary", HeaderValue::from_static("OpenStack-API-Version"));
            }
            response
        }
    };
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response
            .headers_mut()
            .insert("x-openstack-request-id", value);
    }
    response
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for RequestContext {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<RequestContext>().cloned().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "No project: give it in the URL (/v3/{project_id}/…) or as X-Auth-Token user:project",
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_is_taken_from_the_url_unless_a_collection_comes_first() {
        assert_eq!(
            strip_project("/v3/abc123/backups/detail"),
            (Some("abc123".into()), "/v3/backups/detail".into())
        );
        assert_eq!(
            strip_project("/v3/backups/detail"),
            (None, "/v3/backups/detail".into())
        );
        assert_eq!(
            strip_project("/v3/abc123/"),
            (Some("abc123".into()), "/v3".into())
        );
        assert_eq!(strip_project("/"), (None, "/".into()));
    }

    #[test]
    fn microversions_are_negotiated_like_cinder() {
        let mut headers = HeaderMap::new();
        assert_eq!(negotiate(&headers).expect("none"), None);
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume 3.43"),
        );
        assert_eq!(negotiate(&headers).expect("3.43"), Some(Version(43)));
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume latest"),
        );
        assert_eq!(negotiate(&headers).expect("latest"), Some(MAX_VERSION));
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume 3.99"),
        );
        assert_eq!(
            negotiate(&headers)
                .expect_err("too new")
                .into_response()
                .status(),
            406
        );
        headers.insert(
            "openstack-api-version",
            HeaderValue::from_static("volume three"),
        );
        assert_eq!(
            negotiate(&headers)
                .expect_err("garbage")
                .into_response()
                .status(),
            400
        );
    }

    #[test]
    fn noauth_tokens_name_user_and_project() {
        let mut headers = HeaderMap::new();
        headers.insert("x-auth-token", HeaderValue::from_static("alice:p1"));
        let c = caller(&headers, None).expect("caller");
        assert_eq!(
            (c.user_id.as_str(), c.project_id.as_str(), c.is_admin),
            ("alice", "p1", true)
        );
        assert_eq!(
            caller(&headers, Some("p2")).expect("caller").project_id,
            "p2"
        );
        assert!(caller(&HeaderMap::new(), None).is_none());
    }
}
