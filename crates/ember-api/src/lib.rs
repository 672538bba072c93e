//! Ember's HTTP API: OpenStack Cinder's Block Storage API v3 for backups,
//! with the volume, snapshot and service endpoints the clients need, so
//! that the unmodified `cinder` and `openstack` CLIs and openstacksdk drive
//! Ember (the wire contract: `../shared/spec/client-wire.md`).
//!
//! This crate only speaks HTTP: it parses and validates requests, gates
//! fields by microversion and renders Cinder's views and faults. What a
//! request does is `ember-service`'s.
#![forbid(unsafe_code)]

mod backups;
mod context;
mod fault;
mod lists;
mod misc;
mod params;
mod views;
mod volumes;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;
use ember_service::Ember;

pub use context::{MAX_VERSION, MIN_VERSION};

/// The whole API, ready to serve. Project-prefixed URLs
/// (`/v3/{project}/…`) are rewritten to the project-less form by the
/// context middleware, which therefore wraps the routes (it must run
/// before they are matched).
pub fn app(ember: Arc<Ember>) -> Router {
    Router::new()
        .fallback_service(routes(ember))
        .layer(axum::middleware::from_fn(context::with_context))
}

fn routes(ember: Arc<Ember>) -> Router {
    Router::new()
        .route("/", get(misc::root))
        .route("/v3", get(misc::v3))
        .route("/v3/", get(misc::v3))
        .route("/v3/backups", post(backups::create).get(backups::list))
        .route("/v3/backups/detail", get(backups::list_detail))
        .route("/v3/backups/import_record", post(backups::import_record))
        .route(
            "/v3/backups/{id}",
            get(backups::show)
                .put(backups::update)
                .delete(backups::delete),
        )
        .route("/v3/backups/{id}/restore", post(backups::restore))
        .route("/v3/backups/{id}/action", post(backups::action))
        .route(
            "/v3/backups/{id}/export_record",
            get(backups::export_record),
        )
        .route("/v3/volumes", post(volumes::create).get(volumes::list))
        .route("/v3/volumes/detail", get(volumes::list_detail))
        .route(
            "/v3/volumes/{id}",
            get(volumes::show)
                .put(volumes::update)
                .delete(volumes::delete),
        )
        .route(
            "/v3/snapshots",
            post(volumes::create_snapshot).get(volumes::list_snapshots),
        )
        .route("/v3/snapshots/detail", get(volumes::list_snapshots))
        .route(
            "/v3/snapshots/{id}",
            get(volumes::show_snapshot).delete(volumes::delete_snapshot),
        )
        .route("/v3/os-volume-manage", post(volumes::manage))
        .route("/v3/os-services", get(misc::services))
        .route("/v3/limits", get(misc::limits))
        .fallback(|| async { fault::ApiError::not_found("The resource could not be found.") })
        .method_not_allowed_fallback(|| async {
            fault::ApiError::new(
                axum::http::StatusCode::METHOD_NOT_ALLOWED,
                "The method is not allowed for this resource.",
            )
        })
        .with_state(ember)
}

/// Serves the API on `addr` until the process is stopped.
pub async fn serve(ember: Arc<Ember>, addr: SocketAddr) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!("listening on http://{addr}");
    axum::serve(listener, app(ember)).await
}
