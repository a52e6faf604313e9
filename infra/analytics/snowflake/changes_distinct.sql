-- mdm_changes_distinct (Snowflake): one row per event_id, the contract's columns typed, the attribute columns as
-- landed. Kept parallel, line for line, with ../duckdb/changes_distinct.sql (tested there).
CREATE OR REPLACE VIEW mdm_changes_distinct AS
SELECT
    CAST(event_id AS VARCHAR) AS event_id,
    CAST(event_type AS VARCHAR) AS event_type,
    CAST(change_type AS VARCHAR) AS change_type,
    CAST(entity_uri AS VARCHAR) AS entity_uri,
    CAST(entity_type AS VARCHAR) AS entity_type,
    CAST(tenant_id AS VARCHAR) AS tenant_id,
    CAST(object_version AS NUMBER(38, 0)) AS object_version,
    CAST(updated_time AS NUMBER(38, 0)) AS updated_time,
    -- updated_at as a UTC timestamp, from the integer (the same instant as the record's ISO string), so that no
    -- dialect parses strings or applies a session time zone.
    TO_TIMESTAMP_NTZ(CAST(updated_time AS NUMBER(38, 0)), 3) AS updated_at,
    CAST(has_snapshot AS BOOLEAN) AS has_snapshot,
    CAST(merged_into AS VARCHAR) AS merged_into,
    CAST(merged_uris AS ARRAY) AS merged_uris,
    CAST(removed AS BOOLEAN) AS removed,
    -- The attribute columns: everything that is not the contract's (nor the landing's own metadata).
    * EXCLUDE (
        event_id, event_type, change_type, entity_uri, entity_type, tenant_id, object_version, updated_time, updated_at,
        has_snapshot, merged_into, merged_uris, removed, crosswalks, received_at, source_file, loaded_at
    ),
    CAST(crosswalks AS ARRAY) AS crosswalks
FROM mdm_changes
WHERE event_id IS NOT NULL AND entity_uri IS NOT NULL
-- Copies of one event are identical by contract (received_at aside); prefer one with a snapshot, then the first
-- written, so the choice does not depend on file or row order.
QUALIFY ROW_NUMBER() OVER (
    PARTITION BY event_id
    ORDER BY has_snapshot DESC NULLS LAST, received_at ASC NULLS LAST
) = 1;
