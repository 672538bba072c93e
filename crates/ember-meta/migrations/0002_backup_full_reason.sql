-- Why a backup asked to be incremental was taken full (the Ceph backup
-- driver cannot always diff); NULL when it is what was asked for.
ALTER TABLE backups ADD COLUMN full_reason TEXT;
