-- mdm_history (Databricks): SCD type 2, one row per distinct record per entity, valid from its updated_at until the
-- next record's. Kept parallel, line for line, with ../duckdb/history.sql (tested there).
CREATE OR REPLACE VIEW mdm_history WITH SCHEMA EVOLUTION AS
SELECT
    entity_uri,
    entity_type,
    event_id,
    event_type,
    change_type,
    object_version AS version,
    updated_at AS valid_from,
    lead(updated_at) OVER (
        PARTITION BY entity_uri
        ORDER BY object_version ASC NULLS FIRST, updated_time ASC NULLS FIRST, event_id ASC NULLS FIRST
    ) AS valid_to,
    -- The last record, unless it ended the entity (merged into another, removed).
    lead(event_id) OVER (
        PARTITION BY entity_uri
        ORDER BY object_version ASC NULLS FIRST, updated_time ASC NULLS FIRST, event_id ASC NULLS FIRST
    ) IS NULL AND change_type NOT IN ('LOST_MERGE', 'REMOVE') AS is_current,
    merged_into,
    merged_uris,
    has_snapshot,
    -- The attribute columns as recorded: null where the record had no snapshot.
    * EXCEPT (
        event_id, event_type, change_type, entity_uri, entity_type, tenant_id, object_version, updated_time,
        updated_at, has_snapshot, merged_into, merged_uris, removed, crosswalks
    ),
    crosswalks
FROM mdm_changes_distinct;
