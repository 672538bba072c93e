//! The Cinder API in process (tower `oneshot`), on a real service: SQLite,
//! a POSIX repository and file volumes in a temporary directory.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use ember_service::{Ember, ServiceConfig};
use serde_json::{json, Value};
use tower::ServiceExt;

const PROJECT: &str = "0123456789abcdef0123456789abcdef";
const OTHER: &str = "fedcba9876543210fedcba9876543210";

struct Api {
    ember: Arc<Ember>,
    _dir: tempfile::TempDir,
}

struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Api {
    async fn new(tweak: impl FnOnce(&mut ServiceConfig)) -> Api {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ServiceConfig {
            data_dir: dir.path().to_path_buf(),
            ..ServiceConfig::default()
        };
        tweak(&mut config);
        let ember = Ember::open(config).await.expect("open");
        ember.start().await.expect("start");
        Api { ember, _dir: dir }
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        version: Option<&str>,
    ) -> Reply {
        self.call_as(PROJECT, method, path, body, version).await
    }

    async fn call_as(
        &self,
        project: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
        version: Option<&str>,
    ) -> Reply {
        let uri = if path.starts_with('/') {
            path.to_string()
        } else {
            format!("/v3/{project}/{path}")
        };
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-auth-token", format!("user:{project}"))
            .header("host", "127.0.0.1:8776")
            .header("content-type", "application/json");
        if let Some(version) = version {
            request = request.header("openstack-api-version", format!("volume {version}"));
        }
        let body = body
            .map(|b| Body::from(b.to_string()))
            .unwrap_or_else(Body::empty);
        let response = ember_api::app(self.ember.clone())
            .oneshot(request.body(body).expect("request"))
            .await
            .expect("infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).expect("JSON body")
        };
        Reply {
            status,
            headers,
            body,
        }
    }

    async fn create_volume(&self, size: u64) -> String {
        let reply = self
            .call(
                Method::POST,
                "volumes",
                Some(json!({"volume": {"size": size, "name": "v"}})),
                None,
            )
            .await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        reply.body["volume"]["id"].as_str().expect("id").to_string()
    }

    async fn create_backup(&self, volume: &str, incremental: bool) -> Reply {
        self.call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": volume, "name": "b", "incremental": incremental}})),
            None,
        )
        .await
    }

    /// Polls `path` until `key.status` is `want` (fails on error statuses).
    async fn wait_status(&self, path: &str, key: &str, want: &str) -> Value {
        for _ in 0..600 {
            let reply = self.call(Method::GET, path, None, Some("3.71")).await;
            if reply.status == StatusCode::NOT_FOUND && want == "gone" {
                return Value::Null;
            }
            let status = reply.body[key]["status"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            if status == want {
                return reply.body[key].clone();
            }
            assert!(
                !status.starts_with("error"),
                "{path} went to {status}: {}",
                reply.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{path} never reached {want}");
    }

    async fn backup_ready(&self, volume: &str, incremental: bool) -> String {
        let reply = self.create_backup(volume, incremental).await;
        assert_eq!(reply.status, StatusCode::ACCEPTED, "{}", reply.body);
        let id = reply.body["backup"]["id"].as_str().expect("id").to_string();
        self.wait_status(&format!("backups/{id}"), "backup", "available")
            .await;
        id
    }

    async fn write_volume(&self, volume: &str, offset: u64, data: &[u8]) {
        use std::os::unix::fs::FileExt;
        let path = self.ember.volume_path(volume).await.expect("path");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .expect("open volume");
        file.write_all_at(data, offset).expect("write volume");
    }

    async fn read_volume(&self, volume: &str, len: usize) -> Vec<u8> {
        let path = self.ember.volume_path(volume).await.expect("path");
        let mut data = std::fs::read(path).expect("read volume");
        data.truncate(len);
        data
    }
}

fn fault(reply: &Reply, kind: &str, code: u16) -> String {
    assert_eq!(reply.status.as_u16(), code, "{}", reply.body);
    assert_eq!(
        reply.body[kind]["code"],
        json!(code),
        "fault body {}",
        reply.body
    );
    reply.body[kind]["message"]
        .as_str()
        .expect("message")
        .to_string()
}

#[tokio::test]
async fn discovery_versions_and_headers() {
    let api = Api::new(|_| {}).await;
    let root = api.call(Method::GET, "/", None, None).await;
    assert_eq!(root.status, StatusCode::MULTIPLE_CHOICES);
    let version = &root.body["versions"][0];
    assert_eq!(
        (version["version"].as_str(), version["min_version"].as_str()),
        (Some("3.71"), Some("3.0"))
    );
    assert!(root.headers.contains_key("x-openstack-request-id"));
    for path in ["/v3", "/v3/"] {
        let reply = api.call(Method::GET, path, None, None).await;
        assert_eq!(reply.status, StatusCode::OK);
        assert_eq!(reply.body["versions"][0]["id"], "v3.0");
    }

    let reply = api.call(Method::GET, "backups", None, Some("3.45")).await;
    assert_eq!(reply.headers["openstack-api-version"], "volume 3.45");
    assert_eq!(reply.headers["vary"], "OpenStack-API-Version");
    let too_new = api.call(Method::GET, "backups", None, Some("3.72")).await;
    fault(&too_new, "notAcceptable", 406);
    assert!(too_new.headers.contains_key("x-openstack-request-id"));
    fault(
        &api.call(Method::GET, "backups", None, Some("3.x")).await,
        "badRequest",
        400,
    );
    // Project-less URLs take the project from the token.
    let projectless = api.call(Method::GET, "/v3/backups", None, None).await;
    assert_eq!(projectless.status, StatusCode::OK);
    fault(
        &api.call(Method::GET, "nothing-here", None, None).await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call(Method::PATCH, "backups", None, None).await,
        "badMethod",
        405,
    );
}

#[tokio::test]
async fn backup_lifecycle_views_and_data() {
    let api = Api::new(|_| {}).await;
    let volume = api.create_volume(1).await;
    let tagged = api
        .call(
            Method::PUT,
            &format!("volumes/{volume}"),
            Some(json!({"volume": {"metadata": {"owner": "ops"}}})),
            None,
        )
        .await;
    assert_eq!(tagged.status, StatusCode::OK);
    let first = vec![0x5au8; 3 << 20];
    api.write_volume(&volume, 1 << 20, &first).await;

    let created = api.create_backup(&volume, false).await;
    assert_eq!(created.status, StatusCode::ACCEPTED);
    let summary = created.body["backup"].as_object().expect("object");
    assert_eq!(summary.keys().collect::<Vec<_>>(), ["id", "links", "name"]);
    let full = summary["id"].as_str().expect("id").to_string();
    let shown = api
        .wait_status(&format!("backups/{full}"), "backup", "available")
        .await;
    assert_eq!(shown["size"], 1);
    assert_eq!(shown["is_incremental"], false);
    assert_eq!(shown["os-backup-project-attr:project_id"], PROJECT);
    let volume_view = api
        .call(Method::GET, &format!("volumes/{volume}"), None, None)
        .await;
    assert_eq!(
        volume_view.body["volume"]["status"], "available",
        "the volume is returned after the backup"
    );

    // Views are gated by microversion.
    let at_30 = api
        .call(Method::GET, &format!("backups/{full}"), None, None)
        .await
        .body["backup"]
        .clone();
    assert!(at_30.get("metadata").is_none() && at_30.get("user_id").is_none());
    assert!(at_30.get("os-backup-project-attr:project_id").is_none());
    let at_43 = api
        .call(Method::GET, &format!("backups/{full}"), None, Some("3.43"))
        .await
        .body["backup"]
        .clone();
    assert!(at_43.get("metadata").is_some() && at_43.get("user_id").is_none());

    let second = vec![0xa5u8; 4096];
    api.write_volume(&volume, 7 << 20, &second).await;
    let incr = api.backup_ready(&volume, true).await;
    let incr_view = api
        .call(Method::GET, &format!("backups/{incr}"), None, None)
        .await
        .body["backup"]
        .clone();
    assert_eq!(incr_view["is_incremental"], true);
    let full_view = api
        .call(Method::GET, &format!("backups/{full}"), None, None)
        .await
        .body["backup"]
        .clone();
    assert_eq!(full_view["has_dependent_backups"], true);

    // Restore the incremental into a new volume: statuses change before the 202.
    let restore = api
        .call(
            Method::POST,
            &format!("backups/{incr}/restore"),
            Some(json!({"restore": {"name": "back"}})),
            None,
        )
        .await;
    assert_eq!(restore.status, StatusCode::ACCEPTED, "{}", restore.body);
    let target = restore.body["restore"]["volume_id"]
        .as_str()
        .expect("volume")
        .to_string();
    assert_eq!(restore.body["restore"]["volume_name"], "back");
    let restored = api
        .wait_status(&format!("volumes/{target}"), "volume", "available")
        .await;
    assert_eq!(restored["size"], 1);
    assert_eq!(
        restored["metadata"]["owner"], "ops",
        "the backed-up volume's metadata"
    );
    api.wait_status(&format!("backups/{incr}"), "backup", "available")
        .await;
    let data = api.read_volume(&target, 8 << 20).await;
    assert!(data[1 << 20..(1 << 20) + first.len()] == first[..]);
    assert!(data[7 << 20..(7 << 20) + 4096] == second[..]);
    assert!(data[..1 << 20].iter().all(|&b| b == 0));

    // Restore the full one over that volume: the later data is undone.
    let over = api
        .call(
            Method::POST,
            &format!("backups/{full}/restore"),
            Some(json!({"restore": {"volume_id": target}})),
            None,
        )
        .await;
    assert_eq!(over.status, StatusCode::ACCEPTED, "{}", over.body);
    let during = api
        .call(Method::GET, &format!("volumes/{target}"), None, None)
        .await;
    assert!(["restoring-backup", "available"]
        .contains(&during.body["volume"]["status"].as_str().unwrap_or_default()));
    api.wait_status(&format!("backups/{full}"), "backup", "available")
        .await;
    api.wait_status(&format!("volumes/{target}"), "volume", "available")
        .await;
    let data = api.read_volume(&target, 8 << 20).await;
    assert!(
        data[7 << 20..(7 << 20) + 4096].iter().all(|&b| b == 0),
        "restoring the full backup removed later data"
    );

    // The dependents rule, then deletes in order.
    let refused = api
        .call(Method::DELETE, &format!("backups/{full}"), None, None)
        .await;
    assert!(fault(&refused, "badRequest", 400).contains("Incremental backups exist"));
    assert_eq!(
        api.call(Method::DELETE, &format!("backups/{incr}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_status(&format!("backups/{incr}"), "backup", "gone")
        .await;
    assert_eq!(
        api.call(Method::DELETE, &format!("backups/{full}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_status(&format!("backups/{full}"), "backup", "gone")
        .await;
}

#[tokio::test]
async fn lists_filter_sort_page_and_count() {
    let api = Api::new(|_| {}).await;
    let volume = api.create_volume(1).await;
    let mut ids = Vec::new();
    for name in ["c", "a", "b"] {
        let reply = api
            .call(
                Method::POST,
                "backups",
                Some(json!({"backup": {"volume_id": volume, "name": name}})),
                None,
            )
            .await;
        let id = reply.body["backup"]["id"].as_str().expect("id").to_string();
        api.wait_status(&format!("backups/{id}"), "backup", "available")
            .await;
        ids.push(id);
    }
    let names = |reply: &Reply| -> Vec<String> {
        reply.body["backups"]
            .as_array()
            .expect("list")
            .iter()
            .map(|b| b["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let sorted = api
        .call(
            Method::GET,
            "backups/detail?sort=display_name:asc",
            None,
            Some("3.37"),
        )
        .await;
    assert_eq!(names(&sorted), ["a", "b", "c"]);
    let newest = api
        .call(
            Method::GET,
            "backups?sort=created_at:desc&limit=1",
            None,
            None,
        )
        .await;
    assert_eq!(names(&newest), ["b"]);
    let next = newest.body["backups_links"][0]["href"]
        .as_str()
        .expect("next link");
    assert!(next.contains(&format!("marker={}", ids[2])), "{next}");
    let page2 = api
        .call(
            Method::GET,
            &format!("backups?sort=created_at:desc&limit=1&marker={}", ids[2]),
            None,
            None,
        )
        .await;
    assert_eq!(names(&page2), ["a"]);
    let counted = api
        .call(
            Method::GET,
            "backups/detail?limit=1&with_count=True",
            None,
            Some("3.45"),
        )
        .await;
    assert_eq!(counted.body["count"], 3);
    assert_eq!(names(&counted).len(), 1);
    assert_eq!(
        names(
            &api.call(Method::GET, "backups/detail?name=a", None, None)
                .await
        ),
        ["a"]
    );
    assert_eq!(
        names(
            &api.call(Method::GET, "backups/detail?status=error", None, None)
                .await
        )
        .len(),
        0
    );
    assert_eq!(
        names(
            &api.call(
                Method::GET,
                &format!("backups?volume_id={volume}"),
                None,
                None
            )
            .await
        )
        .len(),
        3
    );

    fault(
        &api.call(Method::GET, "backups?colour=red", None, Some("3.31"))
            .await,
        "badRequest",
        400,
    );
    fault(
        &api.call(Method::GET, "backups?limit=-1", None, None).await,
        "badRequest",
        400,
    );
    fault(
        &api.call(Method::GET, "backups?sort=name&sort_key=id", None, None)
            .await,
        "badRequest",
        400,
    );
    fault(
        &api.call(
            Method::GET,
            "backups?marker=00000000-0000-0000-0000-000000000000",
            None,
            None,
        )
        .await,
        "badRequest",
        400,
    );
    // Another project sees none of them.
    let other = api.call_as(OTHER, Method::GET, "backups", None, None).await;
    assert_eq!(other.body["backups"].as_array().map(Vec::len), Some(0));
    let admin_all = api
        .call_as(OTHER, Method::GET, "backups?all_tenants=1", None, None)
        .await;
    assert_eq!(admin_all.body["backups"].as_array().map(Vec::len), Some(3));
}

#[tokio::test]
async fn requests_that_must_fail_change_nothing() {
    let api = Api::new(|c| c.quota_backups = 1).await;
    let volume = api.create_volume(1).await;
    let missing = "00000000-0000-4000-8000-000000000000";

    let no_parent = api.create_backup(&volume, true).await;
    assert!(fault(&no_parent, "badRequest", 400).contains("No backups available"));
    let unknown_key = api
        .call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": volume, "colour": "red"}})),
            None,
        )
        .await;
    fault(&unknown_key, "badRequest", 400);
    let not_uuid = api
        .call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": "x"}})),
            None,
        )
        .await;
    fault(&not_uuid, "badRequest", 400);
    let metadata_too_early = api
        .call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": volume, "metadata": {"k": "v"}}})),
            Some("3.42"),
        )
        .await;
    fault(&metadata_too_early, "badRequest", 400);
    fault(
        &api.call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": missing}})),
            None,
        )
        .await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call(Method::POST, "backups", Some(json!("not an object")), None)
            .await,
        "badRequest",
        400,
    );
    assert_eq!(
        api.call(Method::GET, "backups", None, None).await.body["backups"]
            .as_array()
            .map(Vec::len),
        Some(0)
    );

    let backup = api.backup_ready(&volume, false).await;
    let over = api.create_backup(&volume, false).await;
    assert!(fault(&over, "overLimit", 413).contains("BackupLimitExceeded"));
    assert_eq!(over.headers["retry-after"], "0");

    fault(
        &api.call(Method::GET, &format!("backups/{missing}"), None, None)
            .await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call_as(OTHER, Method::GET, &format!("backups/{backup}"), None, None)
            .await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call_as(
            OTHER,
            Method::DELETE,
            &format!("backups/{backup}"),
            None,
            None,
        )
        .await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call(
            Method::PUT,
            &format!("backups/{backup}"),
            Some(json!({"backup": {"name": "n"}})),
            None,
        )
        .await,
        "itemNotFound",
        404,
    );
    let renamed = api
        .call(
            Method::PUT,
            &format!("backups/{backup}"),
            Some(json!({"backup": {"name": "n"}})),
            Some("3.9"),
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["backup"]["name"], "n");

    let small = api.create_volume(1).await;
    let big = api
        .call(
            Method::POST,
            "volumes",
            Some(json!({"volume": {"size": 2}})),
            None,
        )
        .await;
    let big = big.body["volume"]["id"].as_str().expect("id").to_string();
    api.wait_status(&format!("volumes/{big}"), "volume", "available")
        .await;
    let reset = api
        .call(
            Method::POST,
            &format!("backups/{backup}/action"),
            Some(json!({"os-reset_status": {"status": "restoring"}})),
            None,
        )
        .await;
    fault(&reset, "badRequest", 400);
    fault(
        &api.call(
            Method::POST,
            &format!("backups/{backup}/action"),
            Some(json!({"os-frobnicate": {}})),
            None,
        )
        .await,
        "badRequest",
        400,
    );
    fault(
        &api.call(
            Method::POST,
            &format!("backups/{backup}/restore"),
            Some(json!({"restore": {"volume_id": missing}})),
            None,
        )
        .await,
        "itemNotFound",
        404,
    );
    let _ = small;
    let after = api
        .call(Method::GET, &format!("backups/{backup}"), None, None)
        .await;
    assert_eq!(
        after.body["backup"]["status"], "available",
        "failed requests left the backup alone"
    );
    fault(
        &api.call(Method::GET, &format!("volumes/{missing}"), None, None)
            .await,
        "itemNotFound",
        404,
    );
    fault(
        &api.call(
            Method::POST,
            "volumes",
            Some(json!({"volume": {"size": 0}})),
            None,
        )
        .await,
        "badRequest",
        400,
    );
    fault(
        &api.call(
            Method::POST,
            "volumes",
            Some(json!({"volume": {"size": 1, "imageRef": "x"}})),
            None,
        )
        .await,
        "badRequest",
        400,
    );
}

#[tokio::test]
async fn export_import_and_reset_status() {
    let api = Api::new(|_| {}).await;
    let volume = api.create_volume(1).await;
    api.write_volume(&volume, 0, &[0x11u8; 4096]).await;
    let backup = api.backup_ready(&volume, false).await;
    let record = api
        .call(
            Method::GET,
            &format!("backups/{backup}/export_record"),
            None,
            None,
        )
        .await;
    assert_eq!(record.status, StatusCode::OK);
    let record = record.body["backup-record"].clone();
    assert_eq!(record["backup_service"], ember_service::BACKUP_SERVICE_NAME);
    let again = api
        .call(
            Method::POST,
            "backups/import_record",
            Some(json!({"backup-record": record})),
            None,
        )
        .await;
    assert!(fault(&again, "badRequest", 400).contains("already exists"));
    let bad = api
        .call(
            Method::POST,
            "backups/import_record",
            Some(json!({"backup-record": {"backup_service": "x", "backup_url": "e30="}})),
            None,
        )
        .await;
    fault(&bad, "badRequest", 400);

    let error = api
        .call(
            Method::POST,
            &format!("backups/{backup}/action"),
            Some(json!({"os-reset_status": {"status": "ERROR"}})),
            None,
        )
        .await;
    assert_eq!(error.status, StatusCode::ACCEPTED);
    assert_eq!(
        api.call(Method::GET, &format!("backups/{backup}"), None, None)
            .await
            .body["backup"]["status"],
        "error"
    );
    let back = api
        .call(
            Method::POST,
            &format!("backups/{backup}/action"),
            Some(json!({"os-reset_status": {"status": "available"}})),
            None,
        )
        .await;
    assert_eq!(back.status, StatusCode::ACCEPTED);

    // Another Ember service with its own database on the same repository
    // imports the record and restores the backup.
    let repository = api._dir.path().join("backups");
    let other = Api::new(|c| c.backup_posix_path = Some(repository.clone())).await;
    let imported = other
        .call(
            Method::POST,
            "backups/import_record",
            Some(json!({"backup-record": record.clone()})),
            None,
        )
        .await;
    assert_eq!(imported.status, StatusCode::CREATED, "{}", imported.body);
    assert_eq!(imported.body["backup"]["id"], backup.as_str());
    let restore = other
        .call(
            Method::POST,
            &format!("backups/{backup}/restore"),
            Some(json!({"restore": {}})),
            None,
        )
        .await;
    assert_eq!(restore.status, StatusCode::ACCEPTED, "{}", restore.body);
    let target = restore.body["restore"]["volume_id"]
        .as_str()
        .expect("volume")
        .to_string();
    other
        .wait_status(&format!("volumes/{target}"), "volume", "available")
        .await;
    assert_eq!(other.read_volume(&target, 4096).await, vec![0x11u8; 4096]);

    // Once the backup is deleted its data is gone: importing it again is refused.
    assert_eq!(
        api.call(Method::DELETE, &format!("backups/{backup}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    api.wait_status(&format!("backups/{backup}"), "backup", "gone")
        .await;
    let third = Api::new(|c| c.backup_posix_path = Some(repository.clone())).await;
    let refused = third
        .call(
            Method::POST,
            "backups/import_record",
            Some(json!({"backup-record": record})),
            None,
        )
        .await;
    assert!(fault(&refused, "badRequest", 400).contains("cannot be used"));
}

#[tokio::test]
async fn force_delete_cancels_queued_work_and_the_limit_holds() {
    // One operation at a time: the second backup waits in `creating`.
    let api = Api::new(|c| {
        c.backup_max_operations = 1;
        c.backup_threads = Some(1);
    })
    .await;
    let busy = api.create_volume(2).await;
    let noise: Vec<u8> = (0..256u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    api.write_volume(&busy, 0, &noise).await;
    let other = api.create_volume(1).await;
    let first = api.create_backup(&busy, false).await.body["backup"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let queued = api.create_backup(&other, false).await.body["backup"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    // The first one reports its size as soon as it has opened its source.
    let mut running = api
        .call(Method::GET, &format!("backups/{first}"), None, None)
        .await;
    for _ in 0..100 {
        if running.body["backup"]["progress"]["bytes_total"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        running = api
            .call(Method::GET, &format!("backups/{first}"), None, None)
            .await;
    }
    assert_eq!(
        running.body["backup"]["status"], "creating",
        "the first backup still runs"
    );
    assert!(
        running.body["backup"]["progress"]["bytes_total"].as_u64() > Some(0),
        "{}",
        running.body
    );
    let waiting = api
        .call(Method::GET, &format!("backups/{queued}"), None, None)
        .await;
    assert_eq!(waiting.body["backup"]["status"], "creating");
    assert!(
        waiting.body["backup"].get("progress").is_none(),
        "the second waits for the first: {}",
        waiting.body
    );

    let cancel = api
        .call(
            Method::POST,
            &format!("backups/{queued}/action"),
            Some(json!({"os-force_delete": null})),
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    api.wait_status(&format!("backups/{queued}"), "backup", "gone")
        .await;
    api.wait_status(&format!("volumes/{other}"), "volume", "available")
        .await;

    // Force-deleting the running one cancels it: it is never listed as
    // available, its volume is returned, and no manifest is left.
    let cancel = api
        .call(
            Method::POST,
            &format!("backups/{first}/action"),
            Some(json!({"os-force_delete": {}})),
            None,
        )
        .await;
    assert_eq!(cancel.status, StatusCode::ACCEPTED, "{}", cancel.body);
    for _ in 0..500 {
        let reply = api
            .call(Method::GET, &format!("backups/{first}"), None, None)
            .await;
        if reply.status == StatusCode::NOT_FOUND {
            break;
        }
        assert_eq!(reply.body["backup"]["status"], "deleting", "{}", reply.body);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    api.wait_status(&format!("volumes/{busy}"), "volume", "available")
        .await;
    let manifests = std::fs::read_dir(api._dir.path().join("backups/backups"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        manifests, 0,
        "nothing of the cancelled backups is in the repository"
    );
}

#[tokio::test]
async fn restart_cleans_up_interrupted_work() {
    let api = Api::new(|_| {}).await;
    let source = api.create_volume(1).await;
    let target = api.create_volume(1).await;
    let creating = api.backup_ready(&source, false).await;
    let restoring = api.backup_ready(&source, false).await;
    let deleting = api.backup_ready(&source, false).await;

    // Leave the rows as a crash in the middle of each job would.
    let db = api.ember.database();
    db.set_backup_status(&creating, &["available"], "creating")
        .await
        .expect("status");
    db.set_volume_status(&source, &["available"], "backing-up")
        .await
        .expect("status");
    db.set_backup_status(&restoring, &["available"], "restoring")
        .await
        .expect("status");
    let mut row = db.get_backup(&restoring).await.expect("get").expect("row");
    row.restore_volume_id = Some(target.clone());
    db.update_backup(&row).await.expect("update");
    db.set_volume_status(&target, &["available"], "restoring-backup")
        .await
        .expect("status");
    db.set_backup_status(&deleting, &["available"], "deleting")
        .await
        .expect("status");

    // The restarted service (same data directory) cleans up as Cinder's.
    let config = ServiceConfig {
        data_dir: api._dir.path().to_path_buf(),
        ..ServiceConfig::default()
    };
    let restarted = Ember::open(config).await.expect("reopen");
    restarted.start().await.expect("start");
    let db = restarted.database();
    let failed = db.get_backup(&creating).await.expect("get").expect("row");
    assert_eq!(failed.status, "error");
    assert_eq!(
        failed.fail_reason.as_deref(),
        Some("incomplete backup reset on manager restart")
    );
    assert_eq!(
        db.get_volume(&source)
            .await
            .expect("get")
            .expect("row")
            .status,
        "available"
    );
    assert_eq!(
        db.get_backup(&restoring)
            .await
            .expect("get")
            .expect("row")
            .status,
        "available"
    );
    assert_eq!(
        db.get_volume(&target)
            .await
            .expect("get")
            .expect("row")
            .status,
        "error_restoring"
    );
    for _ in 0..500 {
        if db.get_backup(&deleting).await.expect("get").is_none() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        db.get_backup(&deleting).await.expect("get").is_none(),
        "the interrupted delete was resumed"
    );
    let manifest = api._dir.path().join("backups/backups").join(&deleting);
    assert!(!manifest.exists(), "and its data removed");
}

#[tokio::test]
async fn services_report_up_and_down() {
    let api = Api::new(|_| {}).await;
    let services = api
        .call(Method::GET, "os-services?binary=cinder-backup", None, None)
        .await;
    let rows = services.body["services"].as_array().expect("services");
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["binary"].as_str(), rows[0]["state"].as_str()),
        (Some("cinder-backup"), Some("up"))
    );
    let stale = Api::new(|c| c.service_down_time = 0).await;
    let rows = stale
        .call(Method::GET, "os-services", None, None)
        .await
        .body["services"]
        .clone();
    assert!(rows
        .as_array()
        .expect("rows")
        .iter()
        .all(|r| r["state"] == "down"));
}

#[tokio::test]
async fn snapshots_managed_volumes_updates_and_limits() {
    let api = Api::new(|_| {}).await;
    let volume = api.create_volume(1).await;
    api.write_volume(&volume, 4096, &[0x33u8; 4096]).await;

    // A snapshot is a point-in-time copy; a backup can be taken from it.
    let snap = api
        .call(
            Method::POST,
            "snapshots",
            Some(json!({"snapshot": {"volume_id": volume, "name": "s1"}})),
            None,
        )
        .await;
    assert_eq!(snap.status, StatusCode::ACCEPTED, "{}", snap.body);
    let snapshot = snap.body["snapshot"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert_eq!(snap.body["snapshot"]["status"], "available");
    api.write_volume(&volume, 4096, &[0x44u8; 4096]).await;
    let listed = api
        .call(
            Method::GET,
            &format!("snapshots?volume_id={volume}"),
            None,
            None,
        )
        .await;
    assert_eq!(listed.body["snapshots"].as_array().map(Vec::len), Some(1));
    assert_eq!(
        api.call(Method::GET, &format!("snapshots/{snapshot}"), None, None)
            .await
            .body["snapshot"]["name"],
        "s1"
    );

    let from_snapshot = api
        .call(
            Method::POST,
            "backups",
            Some(json!({"backup": {"volume_id": volume, "snapshot_id": snapshot}})),
            None,
        )
        .await;
    assert_eq!(
        from_snapshot.status,
        StatusCode::ACCEPTED,
        "{}",
        from_snapshot.body
    );
    let backup = from_snapshot.body["backup"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let shown = api
        .wait_status(&format!("backups/{backup}"), "backup", "available")
        .await;
    assert_eq!(shown["snapshot_id"], snapshot.as_str());
    let restore = api
        .call(
            Method::POST,
            &format!("backups/{backup}/restore"),
            Some(json!({"restore": null})),
            None,
        )
        .await;
    let target = restore.body["restore"]["volume_id"]
        .as_str()
        .expect("volume")
        .to_string();
    api.wait_status(&format!("volumes/{target}"), "volume", "available")
        .await;
    assert_eq!(
        api.read_volume(&target, 8192).await[4096..],
        [0x33u8; 4096],
        "the snapshot's data, not the later write"
    );

    // A volume with snapshots cannot go; the snapshot can, then the volume.
    let refused = api
        .call(Method::DELETE, &format!("volumes/{volume}"), None, None)
        .await;
    assert!(fault(&refused, "badRequest", 400).contains("dependent snapshots"));
    assert_eq!(
        api.call(Method::DELETE, &format!("snapshots/{snapshot}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    fault(
        &api.call(Method::GET, &format!("snapshots/{snapshot}"), None, None)
            .await,
        "itemNotFound",
        404,
    );

    let renamed = api
        .call(
            Method::PUT,
            &format!("volumes/{volume}"),
            Some(json!({"volume": {"name": "renamed", "metadata": {"k": "v"}}})),
            None,
        )
        .await;
    assert_eq!(renamed.status, StatusCode::OK);
    assert_eq!(renamed.body["volume"]["name"], "renamed");
    assert_eq!(renamed.body["volume"]["metadata"]["k"], "v");
    let path = api.ember.volume_path(&volume).await.expect("path");
    assert_eq!(
        api.call(Method::DELETE, &format!("volumes/{volume}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert!(
        !std::path::Path::new(&path).exists(),
        "a created volume's data goes with it"
    );

    // An existing image comes under management; deleting it keeps the data.
    let image = api._dir.path().join("existing.img");
    std::fs::write(&image, vec![7u8; 3 << 20]).expect("image");
    let managed = api
        .call(
            Method::POST,
            "os-volume-manage",
            Some(json!({"volume": {"host": "h", "ref": {"source-name": image}, "name": "m"}})),
            None,
        )
        .await;
    assert_eq!(managed.status, StatusCode::ACCEPTED, "{}", managed.body);
    assert_eq!(managed.body["volume"]["size"], 1);
    let managed_id = managed.body["volume"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let backup = api.backup_ready(&managed_id, false).await;
    assert_eq!(
        api.call(Method::DELETE, &format!("volumes/{managed_id}"), None, None)
            .await
            .status,
        StatusCode::ACCEPTED
    );
    assert_eq!(std::fs::read(&image).expect("kept").len(), 3 << 20);
    let missing = api
        .call(
            Method::POST,
            "os-volume-manage",
            Some(json!({"volume": {"ref": {"source-name": "/nonexistent"}}})),
            None,
        )
        .await;
    fault(&missing, "badRequest", 400);

    let limits = api.call(Method::GET, "limits", None, None).await;
    assert_eq!(limits.body["limits"]["absolute"]["maxTotalBackups"], 10);
    assert_eq!(limits.body["limits"]["absolute"]["totalBackupsUsed"], 2);
    let _ = backup;
}
