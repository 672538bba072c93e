-- Ember metadata schema, version 1.
--
-- One schema for SQLite and PostgreSQL alike, so only portable types:
-- timestamps are TEXT in a fixed-width UTC form that sorts as it reads
-- (`2026-11-22T03:39:11.123456789Z`), booleans are BIGINT 0/1, metadata
-- maps are JSON objects in TEXT, sizes and counters are BIGINT.
--
-- Volumes, snapshots and backups are deleted softly (`deleted` = 1, the
-- status becomes 'deleted'): the row stays, so its id is never reused.

CREATE TABLE volumes (
    id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    size_gib BIGINT NOT NULL,
    status TEXT NOT NULL,
    previous_status TEXT,
    availability_zone TEXT NOT NULL,
    volume_type TEXT,
    path TEXT NOT NULL,
    owns_data BIGINT NOT NULL,
    source_backup_id TEXT,
    snapshot_id TEXT,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    deleted_at TEXT
);

CREATE INDEX volumes_project_created ON volumes (project_id, created_at);

CREATE TABLE snapshots (
    id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    name TEXT,
    description TEXT,
    size_gib BIGINT NOT NULL,
    status TEXT NOT NULL,
    path TEXT NOT NULL,
    metadata TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    deleted_at TEXT
);

CREATE INDEX snapshots_project_created ON snapshots (project_id, created_at);
CREATE INDEX snapshots_volume ON snapshots (volume_id);

CREATE TABLE backups (
    id TEXT NOT NULL PRIMARY KEY,
    project_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    volume_id TEXT NOT NULL,
    snapshot_id TEXT,
    parent_id TEXT,
    status TEXT NOT NULL,
    name TEXT,
    description TEXT,
    container TEXT,
    availability_zone TEXT,
    size_gib BIGINT NOT NULL,
    object_count BIGINT NOT NULL,
    fail_reason TEXT,
    data_timestamp TEXT NOT NULL,
    metadata TEXT NOT NULL,
    restore_volume_id TEXT,
    temp_snapshot_id TEXT,
    host TEXT,
    progress_done BIGINT NOT NULL,
    progress_total BIGINT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    deleted BIGINT NOT NULL DEFAULT 0,
    deleted_at TEXT
);

CREATE INDEX backups_project_created ON backups (project_id, created_at);
CREATE INDEX backups_project_volume ON backups (project_id, volume_id, data_timestamp);
CREATE INDEX backups_parent ON backups (parent_id);
CREATE INDEX backups_status ON backups (status);

CREATE TABLE services (
    host TEXT NOT NULL,
    service_binary TEXT NOT NULL,
    zone TEXT NOT NULL,
    disabled BIGINT NOT NULL DEFAULT 0,
    disabled_reason TEXT,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (host, service_binary)
);
