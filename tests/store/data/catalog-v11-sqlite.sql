CREATE TABLE "namespaces" (
   "name" TEXT PRIMARY KEY,
   "created" TEXT NOT NULL,
   "created_by" TEXT,
   "settings" TEXT NOT NULL
);
CREATE TABLE "file_revisions" (
   "id" INTEGER PRIMARY KEY,
   "namespace" TEXT NOT NULL REFERENCES "namespaces"("name"),
   "path" TEXT NOT NULL,
   "revision" INTEGER NOT NULL,
   "sha256" TEXT,
   "size" INTEGER,
   "deleted" INTEGER NOT NULL,
   "created" TEXT NOT NULL,
   "author" TEXT,
   "origin" TEXT,
   "git_blob" TEXT
);
CREATE UNIQUE INDEX "idx_file_revisions_namespace_path_revision"
    ON "file_revisions" ("namespace", "path", "revision");
CREATE INDEX "idx_file_revisions_sha256"
    ON "file_revisions" ("sha256");
CREATE TABLE "file_heads" (
   "namespace" TEXT,
   "path" TEXT,
   "revision" INTEGER NOT NULL,
   "sha256" TEXT,
   "size" INTEGER,
   "deleted" INTEGER NOT NULL,
   "updated" TEXT NOT NULL,
   "git_blob" TEXT,
   PRIMARY KEY ("namespace", "path")
);
CREATE TABLE "tokens" (
   "id" TEXT PRIMARY KEY,
   "name" TEXT,
   "secret_hash" TEXT NOT NULL,
   "scope" TEXT NOT NULL,
   "role" TEXT NOT NULL,
   "created" TEXT NOT NULL,
   "created_by" TEXT,
   "revoked" TEXT
);
CREATE UNIQUE INDEX "idx_tokens_secret_hash"
    ON "tokens" ("secret_hash");
CREATE TABLE "audit" (
   "id" INTEGER PRIMARY KEY,
   "at" TEXT,
   "actor" TEXT,
   "action" TEXT,
   "namespace" TEXT,
   "detail" TEXT
);
CREATE TABLE "dists" (
   "namespace" TEXT REFERENCES "namespaces"("name"),
   "filename" TEXT,
   "project" TEXT NOT NULL,
   "name" TEXT,
   "version" TEXT NOT NULL,
   "filetype" TEXT,
   "sha256" TEXT NOT NULL,
   "size" INTEGER NOT NULL,
   "metadata_sha256" TEXT NOT NULL,
   "requires_python" TEXT,
   "summary" TEXT,
   "upload_time" TEXT NOT NULL,
   "uploader" TEXT,
   "yanked" INTEGER NOT NULL DEFAULT 0,
   "yanked_reason" TEXT,
   "yanked_by" TEXT,
   "yanked_at" TEXT, "core_metadata" INTEGER,
   PRIMARY KEY ("namespace", "filename")
);
CREATE INDEX "idx_dists_namespace_project"
    ON "dists" ("namespace", "project");
CREATE INDEX "idx_dists_sha256"
    ON "dists" ("sha256");
CREATE INDEX "idx_dists_metadata_sha256"
    ON "dists" ("metadata_sha256");
CREATE TABLE "syncs" (
   "name" TEXT PRIMARY KEY,
   "namespace" TEXT NOT NULL,
   "spec" TEXT NOT NULL,
   "created" TEXT NOT NULL,
   "created_by" TEXT
, "token_id" TEXT);
CREATE TABLE "sync_runs" (
   "id" INTEGER PRIMARY KEY,
   "sync" TEXT,
   "namespace" TEXT,
   "url" TEXT,
   "ref" TEXT,
   "commit_sha" TEXT,
   "dry_run" INTEGER,
   "added" INTEGER,
   "updated" INTEGER,
   "deleted" INTEGER,
   "unchanged" INTEGER,
   "skipped" INTEGER,
   "started" TEXT,
   "finished" TEXT,
   "duration" REAL,
   "error" TEXT,
   "actor" TEXT
, "commit_time" INTEGER);
CREATE INDEX "idx_sync_runs_sync"
    ON "sync_runs" ("sync");
CREATE TABLE "builds" (
   "id" INTEGER PRIMARY KEY,
   "namespace" TEXT NOT NULL,
   "path" TEXT NOT NULL,
   "publish_to" TEXT NOT NULL,
   "key" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   "snapshot" TEXT NOT NULL,
   "settings" TEXT NOT NULL,
   "source_date_epoch" INTEGER,
   "python_version" TEXT,
   "created" TEXT NOT NULL,
   "created_by" TEXT,
   "started" TEXT,
   "finished" TEXT,
   "worker" TEXT,
   "heartbeat" REAL,
   "cancel_requested" INTEGER DEFAULT 0,
   "error" TEXT,
   "log_sha256" TEXT,
   "artifacts" TEXT,
   "backend" TEXT
, "token_id" TEXT);
CREATE INDEX "idx_builds_state"
    ON "builds" ("state");
CREATE INDEX "idx_builds_key_state"
    ON "builds" ("key", "state");
CREATE INDEX "idx_builds_namespace"
    ON "builds" ("namespace");
CREATE TABLE "upstream_pages" (
   "upstream" TEXT,
   "project" TEXT,
   "page" TEXT NOT NULL,
   "fetched" REAL NOT NULL,
   PRIMARY KEY ("upstream", "project")
);
CREATE TABLE "upstream_files" (
   "upstream" TEXT,
   "filename" TEXT,
   "url" TEXT,
   "sha256" TEXT,
   "size" INTEGER,
   "metadata_sha256" TEXT,
   "fetched" TEXT,
   PRIMARY KEY ("upstream", "filename")
);
CREATE INDEX "idx_upstream_files_sha256"
    ON "upstream_files" ("sha256");
CREATE TABLE "bundles" (
   "key" TEXT,
   "namespace" TEXT,
   "sha256" TEXT NOT NULL,
   "size" INTEGER NOT NULL,
   "created" TEXT NOT NULL,
   "created_by" TEXT,
   PRIMARY KEY ("key", "namespace")
);
CREATE TABLE "resolutions" (
   "namespace" TEXT,
   "key" TEXT,
   "state" TEXT NOT NULL,
   "lock" TEXT NOT NULL,
   "env_key" TEXT NOT NULL,
   "python" TEXT,
   "platform" TEXT,
   "requirements" TEXT,
   "created" REAL NOT NULL,
   "created_by" TEXT,
   PRIMARY KEY ("namespace", "key")
);
CREATE TABLE "webhook_deliveries" (
   "sync" TEXT,
   "delivery" TEXT,
   "received" TEXT NOT NULL,
   "state" TEXT NOT NULL,
   PRIMARY KEY ("sync", "delivery")
);
CREATE INDEX "idx_webhook_deliveries_received"
    ON "webhook_deliveries" ("received");
CREATE TABLE "ui_sessions" (
   "id_hash" TEXT PRIMARY KEY,
   "token_id" TEXT NOT NULL,
   "csrf" TEXT NOT NULL,
   "created" TEXT NOT NULL,
   "expires" REAL NOT NULL
);
CREATE INDEX "idx_ui_sessions_token_id"
    ON "ui_sessions" ("token_id");
CREATE INDEX "idx_dists_uploader"
    ON "dists" ("uploader");
CREATE INDEX "idx_file_revisions_namespace_origin_path_revision_deleted"
    ON "file_revisions" ("namespace", "origin", "path", "revision", "deleted");
CREATE TABLE "resolution_files" (
   "namespace" TEXT,
   "key" TEXT,
   "sha256" TEXT NOT NULL,
   PRIMARY KEY ("namespace", "key", "sha256")
);
CREATE INDEX "idx_resolution_files_sha256"
    ON "resolution_files" ("sha256");
