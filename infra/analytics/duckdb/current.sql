-- mdm_current (DuckDB): the golden record, one row per entity whose latest record is not LOST_MERGE or REMOVE,
-- with the attributes of its latest record that has a snapshot. Kept parallel, line for line, with
-- ../snowflake/current.sql and ../databricks/current.sql.
CREATE OR REPLACE VIEW mdm_current AS
WITH latest_record AS (
    -- The entity's latest record, snapshot or not: it decides whether the entity exists, and its version.
    SELECT entity_uri, change_type, object_version, updated_at
    FROM mdm_changes_distinct
    QUALIFY row_number() OVER (
        PARTITION BY entity_uri
        ORDER BY object_version DESC NULLS LAST, updated_time DESC NULLS LAST, event_id DESC NULLS LAST
    ) = 1
),
latest_snapshot AS (
    -- The entity's latest record with attributes (a MERGE or UNMERGE record may carry none).
    SELECT *
    FROM mdm_changes_distinct
    WHERE has_snapshot
    QUALIFY row_number() OVER (
        PARTITION BY entity_uri
        ORDER BY object_version DESC NULLS LAST, updated_time DESC NULLS LAST, event_id DESC NULLS LAST
    ) = 1
)
SELECT
    latest_record.entity_uri,
    latest_snapshot.entity_type,
    latest_record.object_version,
    latest_record.updated_at,
    latest_snapshot.event_id AS snapshot_event_id,
    latest_snapshot.* EXCLUDE (
        event_id, event_type, change_type, entity_uri, entity_type, tenant_id, object_version, updated_time,
        updated_at, has_snapshot, merged_into, merged_uris, removed, crosswalks
    ),
    latest_snapshot.crosswalks
FROM latest_record
-- An entity with no snapshot at all has nothing to show: the inner join leaves it out.
JOIN latest_snapshot ON latest_snapshot.entity_uri = latest_record.entity_uri
WHERE latest_record.change_type NOT IN ('LOST_MERGE', 'REMOVE');
