//! The driver's configuration: Cinder's `backup_ceph_*` options.

use ember_ceph::{CephConfig, CreateOptions, Features};

/// Cinder's `backup_ceph_chunk_size` is 128 MiB, copied one at a time;
/// Ember reads and writes smaller pieces, several at once. Memory is about
/// 18 pieces (4 being read, 8 read ahead, 2 being written, copies of 4
/// more in flight to an RBD image): 144 MiB at the default.
pub const DEFAULT_CHUNK_SIZE: usize = 8 << 20;

/// Where and how backups are kept.
#[derive(Clone, Debug)]
pub struct RbdBackupConfig {
    /// The backup cluster: its conf file, user and keyring (Cinder's
    /// `backup_ceph_conf`, `backup_ceph_user`), and the backup pool
    /// (`backup_ceph_pool`, by default `backups`).
    pub cluster: CephConfig,
    /// Stripe unit of new backup images (`backup_ceph_stripe_unit`);
    /// `None` for the cluster's default.
    pub stripe_unit: Option<u64>,
    /// Stripe count of new backup images (`backup_ceph_stripe_count`);
    /// `None` for the cluster's default.
    pub stripe_count: Option<u64>,
    /// Give new backup images exclusive-lock, object-map and fast-diff, as
    /// Cinder does when librbd supports them (since 18.0.0): fast
    /// incremental diffs and restores. Default `true`.
    pub fast_diff: bool,
    /// Give new backup images exclusive-lock and journaling, so the backup
    /// pool can be RBD-mirrored (`backup_ceph_image_journals`). Default
    /// `false`.
    pub image_journals: bool,
    /// Bytes read and written at a time when copying data
    /// (`backup_ceph_chunk_size`). Default [`DEFAULT_CHUNK_SIZE`].
    pub chunk_size: usize,
    /// On restore into a target larger than the backup, zero what lies
    /// beyond the backup (`restore_discard_excess_bytes`). Default `true`.
    pub restore_discard_excess_bytes: bool,
}

impl RbdBackupConfig {
    /// Cinder's defaults on `cluster` (whose `pool` is the backup pool).
    pub fn new(cluster: CephConfig) -> Self {
        RbdBackupConfig {
            cluster,
            stripe_unit: None,
            stripe_count: None,
            fast_diff: true,
            image_journals: false,
            chunk_size: DEFAULT_CHUNK_SIZE,
            restore_discard_excess_bytes: true,
        }
    }

    /// The features of new backup images, as Cinder's `_get_rbd_support`
    /// picks them: layering; striping v2 when a striping is configured;
    /// exclusive-lock, object-map and fast-diff; exclusive-lock and
    /// journaling when asked for.
    pub fn image_features(&self) -> Features {
        let mut features = Features::LAYERING;
        if self.stripe_unit.is_some() || self.stripe_count.is_some() {
            features |= Features::STRIPINGV2;
        }
        if self.fast_diff {
            features |= Features::EXCLUSIVE_LOCK | Features::OBJECT_MAP | Features::FAST_DIFF;
        }
        if self.image_journals {
            features |= Features::EXCLUSIVE_LOCK | Features::JOURNALING;
        }
        features
    }

    /// How new backup images are created.
    pub(crate) fn create_options(&self) -> CreateOptions {
        CreateOptions {
            features: Some(self.image_features()),
            stripe_unit: self.stripe_unit,
            stripe_count: self.stripe_count,
            ..CreateOptions::default()
        }
    }
}
