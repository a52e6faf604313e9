-- Landing of analytics-sink's change records in Databricks: a streaming table fed by Auto Loader (STREAM
-- read_files is Auto Loader, cloudFiles, underneath) from the sink's S3 prefix, through a Unity Catalog external
-- location that covers it. Replace <bucket> and <prefix>; then run changes_distinct.sql, current.sql and
-- history.sql. Databricks SQL (a serverless or pro warehouse) or a Lakeflow pipeline runs it; each
-- REFRESH STREAMING TABLE mdm_changes (scheduled, or triggered on file arrival) reads only the objects not yet read.
CREATE OR REFRESH STREAMING TABLE mdm_changes
COMMENT 'analytics-sink change records as landed: append-only, duplicates included'
AS SELECT
    *,
    -- Not a record field: the object each row came from.
    _metadata.file_path AS source_file
FROM STREAM read_files(
    's3://<bucket>/<prefix>/',
    format => 'json',
    -- The contract's types. The deployment's attribute columns are inferred (strings) and added to the table as
    -- they first appear; updated_at and received_at stay strings: the views derive the timestamp from updated_time.
    schemaHints => 'event_id STRING, event_type STRING, change_type STRING, entity_uri STRING, entity_type STRING,
        tenant_id STRING, object_version BIGINT, updated_time BIGINT, updated_at STRING, has_snapshot BOOLEAN,
        crosswalks ARRAY<STRUCT<type: STRING, value: STRING, source_table: STRING>>, merged_into STRING,
        merged_uris ARRAY<STRING>, removed BOOLEAN, received_at STRING',
    -- entity_type=<T>/dt=<D>/ folders must not become columns: entity_type is already a record field.
    partitionColumns => '',
    -- Values that do not fit the hinted types land here instead of failing the stream; the views drop it.
    rescuedDataColumn => '_rescued_data'
);
