-- Landing of analytics-sink's change records in Snowflake: an external stage on the sink's S3 prefix, a table
-- with the record's fields as columns, and a Snowpipe that loads each new object as S3 announces it. Replace
-- <bucket>, <prefix> and <role ARN>; then run changes_distinct.sql, current.sql and history.sql.

-- Once, by an account admin: the IAM role Snowflake assumes to read the prefix. DESC INTEGRATION mdm_changes_s3
-- gives STORAGE_AWS_IAM_USER_ARN and STORAGE_AWS_EXTERNAL_ID for that role's trust policy.
CREATE STORAGE INTEGRATION IF NOT EXISTS mdm_changes_s3
    TYPE = EXTERNAL_STAGE
    STORAGE_PROVIDER = 'S3'
    ENABLED = TRUE
    STORAGE_AWS_ROLE_ARN = '<role ARN>'
    STORAGE_ALLOWED_LOCATIONS = ('s3://<bucket>/<prefix>/');

-- Firehose's objects: gzip, one JSON object per line.
CREATE FILE FORMAT IF NOT EXISTS mdm_changes_json
    TYPE = JSON
    COMPRESSION = GZIP;

CREATE STAGE IF NOT EXISTS mdm_changes_stage
    URL = 's3://<bucket>/<prefix>/'
    STORAGE_INTEGRATION = mdm_changes_s3
    FILE_FORMAT = (FORMAT_NAME = 'mdm_changes_json');

-- The contract's fields; the deployment's attribute columns (its mapping file) are added by schema evolution the
-- first time a loaded file carries them (or declare them here, VARCHAR, and drop ENABLE_SCHEMA_EVOLUTION).
-- updated_at and received_at stay strings: the views derive the timestamp from updated_time.
CREATE TABLE IF NOT EXISTS mdm_changes (
    event_id VARCHAR,
    event_type VARCHAR,
    change_type VARCHAR,
    entity_uri VARCHAR,
    entity_type VARCHAR,
    tenant_id VARCHAR,
    object_version NUMBER(38, 0),
    updated_time NUMBER(38, 0),
    updated_at VARCHAR,
    has_snapshot BOOLEAN,
    crosswalks ARRAY,
    merged_into VARCHAR,
    merged_uris ARRAY,
    removed BOOLEAN,
    received_at VARCHAR,
    -- Not record fields: the object each row came from and when it was loaded (INCLUDE_METADATA below).
    source_file VARCHAR,
    loaded_at TIMESTAMP_LTZ
)
ENABLE_SCHEMA_EVOLUTION = TRUE;

-- AUTO_INGEST: S3 event notifications (s3:ObjectCreated:* on <prefix>/) go to the SQS queue that SHOW PIPES
-- lists as notification_channel. Snowpipe loads each object once (its load history is kept 14 days; the sink's
-- objects are immutable and uniquely named), so a re-sent notification adds nothing; duplicate records inside
-- the files are the views' business. ALTER PIPE mdm_changes_pipe REFRESH loads what was staged before the pipe
-- (up to 7 days back).
CREATE PIPE IF NOT EXISTS mdm_changes_pipe
    AUTO_INGEST = TRUE
    AS COPY INTO mdm_changes
    FROM @mdm_changes_stage
    FILE_FORMAT = (FORMAT_NAME = 'mdm_changes_json')
    MATCH_BY_COLUMN_NAME = CASE_INSENSITIVE
    INCLUDE_METADATA = (source_file = METADATA$FILENAME, loaded_at = METADATA$START_SCAN_TIME);
