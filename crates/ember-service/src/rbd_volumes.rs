//! Volumes as RBD images (`volume_driver = "rbd"`), named as Cinder's RBD
//! driver names them: `volume-<id>` in `rbd_pool`, snapshots
//! `snapshot-<id>` on their volume's image (protected, so clones can be
//! made from them). A volume made from a snapshot is a clone, flattened at
//! once so the snapshot stays deletable. Existing images (an OpenStack
//! cloud's `volumes/volume-<uuid>`) are brought under management in place.

use std::sync::{Mutex, MutexGuard};

use ember_ceph::{rbd, CephConfig, CephError, CreateOptions, Image, IoCtx, Rados};
use ember_volume::{parse_snapshot_name, RbdSpec, RbdTarget, RestoreTarget};

use crate::volumes::{Location, VolumeBackend, GIB};
use crate::ServiceError;

/// A connection to one Ceph cluster, made when first needed and made again
/// after a failure (a cluster down at start, or later, is retried).
pub(crate) struct CephConnection {
    config: CephConfig,
    rados: Mutex<Option<Rados>>,
}

impl CephConnection {
    /// A connection to the cluster and default pool of `config` (not
    /// connected yet).
    pub(crate) fn new(config: CephConfig) -> Self {
        CephConnection {
            config,
            rados: Mutex::new(None),
        }
    }

    /// The configured pool.
    pub(crate) fn pool(&self) -> &str {
        &self.config.pool
    }

    /// An I/O context on `pool`, connecting first if needed.
    pub(crate) fn io(&self, pool: &str) -> Result<IoCtx, ServiceError> {
        let mut rados = self.lock();
        let cluster = match rados.as_ref() {
            Some(cluster) => cluster.clone(),
            None => {
                let cluster = self.config.connect_cluster().map_err(|e| {
                    ServiceError::Backend(format!(
                        "Ceph cluster of {} as {}: {e}",
                        self.config.conf_path.display(),
                        self.config.client_name()
                    ))
                })?;
                *rados = Some(cluster.clone());
                cluster
            }
        };
        drop(rados);
        cluster
            .ioctx(pool)
            .map_err(|e| ServiceError::Backend(format!("pool {pool}: {e}")))
    }

    /// Connects (if needed) and lists the configured pool's images: a
    /// wrong user or key, an unreachable cluster, a missing pool or
    /// missing capabilities fail here. A failure drops the connection, so
    /// the next check connects anew.
    pub(crate) fn check(&self) -> Result<(), String> {
        let listed = self
            .io(self.pool())
            .and_then(|io| rbd::list(&io).map_err(|e| ServiceError::Backend(e.to_string())));
        match listed {
            Ok(_) => Ok(()),
            Err(e) => {
                self.reset();
                Err(e.to_string())
            }
        }
    }

    /// Drops the connection; the next use connects anew.
    pub(crate) fn reset(&self) {
        *self.lock() = None;
    }

    fn lock(&self) -> MutexGuard<'_, Option<Rados>> {
        self.rados.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// RBD volumes in one pool of one cluster.
pub(crate) struct RbdVolumes {
    ceph: CephConnection,
}

impl RbdVolumes {
    /// Volumes in the pool of `config`.
    pub(crate) fn new(config: CephConfig) -> Self {
        RbdVolumes {
            ceph: CephConnection::new(config),
        }
    }

    /// The cluster connection (backups read the volumes' images through it).
    pub(crate) fn connection(&self) -> &CephConnection {
        &self.ceph
    }

    fn spec_of(&self, location: &str) -> Result<RbdSpec, ServiceError> {
        match Location::parse(location)? {
            Location::Rbd(spec) => Ok(spec),
            Location::Path(path) => Err(ServiceError::Volume(format!(
                "{}: not an RBD image (volume_driver is rbd)",
                path.display()
            ))),
        }
    }

    fn open(&self, spec: &RbdSpec) -> Result<(IoCtx, Image), ServiceError> {
        let io = self.ceph.io(&spec.pool)?;
        let image = Image::open(&io, &spec.image).map_err(ceph_error)?;
        Ok((io, image))
    }

    fn location(&self, image: &str) -> String {
        format!("rbd:{}/{image}", self.ceph.pool())
    }
}

impl VolumeBackend for RbdVolumes {
    fn create(&self, id: &str, size_gib: i64) -> Result<String, ServiceError> {
        let io = self.ceph.io(self.ceph.pool())?;
        let name = format!("volume-{id}");
        rbd::create(&io, &name, size_gib as u64 * GIB, &CreateOptions::default())
            .map_err(ceph_error)?;
        Ok(self.location(&name))
    }

    fn create_from_snapshot(
        &self,
        snapshot: &str,
        id: &str,
        size_gib: i64,
    ) -> Result<String, ServiceError> {
        let parent = self.spec_of(snapshot)?;
        let Some(snap) = &parent.snap else {
            return Err(ServiceError::Volume(format!("{snapshot}: not a snapshot")));
        };
        let parent_io = self.ceph.io(&parent.pool)?;
        let io = self.ceph.io(self.ceph.pool())?;
        let name = format!("volume-{id}");
        rbd::clone(
            &parent_io,
            &parent.image,
            snap,
            &io,
            &name,
            &CreateOptions::default(),
        )
        .map_err(ceph_error)?;
        let finish = || -> Result<(), CephError> {
            let image = Image::open(&io, &name)?;
            image.flatten()?;
            if image.size()? < size_gib as u64 * GIB {
                image.resize(size_gib as u64 * GIB)?;
            }
            image.close()
        };
        if let Err(e) = finish() {
            let _ = rbd::remove(&io, &name);
            return Err(ceph_error(e));
        }
        Ok(self.location(&name))
    }

    fn snapshot(&self, volume: &str, id: &str) -> Result<String, ServiceError> {
        let spec = self.spec_of(volume)?;
        let (_io, image) = self.open(&spec)?;
        let name = format!("snapshot-{id}");
        image.snap_create(&name).map_err(ceph_error)?;
        if let Err(e) = image.snap_protect(&name) {
            let _ = image.snap_remove(&name);
            return Err(ceph_error(e));
        }
        Ok(format!("{}@{name}", spec.label()))
    }

    /// Removes the image, after the snapshots backups took of it (Cinder's
    /// RBD driver does the same); other snapshots keep it (the API refuses
    /// to delete a volume with snapshots first).
    fn remove_volume(&self, volume: &str) -> Result<(), ServiceError> {
        let spec = self.spec_of(volume)?;
        let io = self.ceph.io(&spec.pool)?;
        match Image::open(&io, &spec.image) {
            Ok(image) => {
                for snap in image.snap_list().map_err(ceph_error)? {
                    if parse_snapshot_name(&snap.name).is_some() {
                        image.snap_remove(&snap.name).map_err(ceph_error)?;
                    }
                }
                image.close().map_err(ceph_error)?;
            }
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(ceph_error(e)),
        }
        match rbd::remove(&io, &spec.image) {
            Err(e) if !e.is_not_found() => Err(ceph_error(e)),
            _ => Ok(()),
        }
    }

    fn remove_snapshot(&self, snapshot: &str) -> Result<(), ServiceError> {
        let spec = self.spec_of(snapshot)?;
        let Some(snap) = &spec.snap else {
            return Err(ServiceError::Volume(format!("{snapshot}: not a snapshot")));
        };
        let io = self.ceph.io(&spec.pool)?;
        let image = match Image::open(&io, &spec.image) {
            Ok(image) => image,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(ceph_error(e)),
        };
        match image.snap_is_protected(snap) {
            Ok(true) => image.snap_unprotect(snap).map_err(ceph_error)?,
            Ok(false) => {}
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(ceph_error(e)),
        }
        match image.snap_remove(snap) {
            Err(e) if !e.is_not_found() => Err(ceph_error(e)),
            _ => Ok(()),
        }
    }

    /// `reference` is an image of `rbd_pool` (`volume-<uuid>`, as an
    /// OpenStack cloud names them) or `rbd:POOL/IMAGE`.
    fn manage(&self, reference: &str) -> Result<(String, u64), ServiceError> {
        let location = if reference.starts_with("rbd:") {
            reference.to_string()
        } else {
            self.location(reference)
        };
        let spec = self
            .spec_of(&location)
            .map_err(|e| ServiceError::bad(e.to_string()))?;
        if spec.snap.is_some() {
            return Err(ServiceError::bad(format!(
                "{location}: a snapshot cannot be managed as a volume"
            )));
        }
        let io = self.ceph.io(&spec.pool)?;
        let size = Image::open_read_only(&io, &spec.image, None)
            .and_then(|image| image.size())
            .map_err(|e| ServiceError::bad(format!("{location}: {e}")))?;
        Ok((location, size))
    }

    fn open_target(
        &self,
        volume: &str,
        data_size: u64,
    ) -> Result<Box<dyn RestoreTarget>, ServiceError> {
        let spec = self.spec_of(volume)?;
        let io = self.ceph.io(&spec.pool)?;
        let target = RbdTarget::open_existing(&io, &spec.image, data_size)
            .map_err(|e| ServiceError::Volume(e.to_string()))?;
        Ok(Box::new(target))
    }

    fn check(&self) -> Result<(), String> {
        self.ceph.check()
    }
}

fn ceph_error(e: CephError) -> ServiceError {
    ServiceError::Volume(e.to_string())
}
