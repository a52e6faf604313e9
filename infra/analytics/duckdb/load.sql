-- mdm_changes over landed change records (DuckDB): every gzip NDJSON object under the sink's prefix, as landed.
-- The path is a placeholder: tests/localstack/analytics_sql.py replaces the quoted '<root>/**/*.gz' with the
-- list of files it found; by hand, write the folder that holds entity_type=<T>/dt=<YYYY-MM-DD>/ in its place.
CREATE OR REPLACE VIEW mdm_changes AS
SELECT *
FROM read_json(
    '<root>/**/*.gz',
    format = 'newline_delimited',
    -- The attribute columns differ between files (a file of merge records may carry none of them).
    union_by_name = true,
    -- entity_type=<T>/dt=<D>/ folders must not become columns: entity_type is already a record field.
    hive_partitioning = false,
    -- Infer each column's type from every record, not a sample: an attribute that is null in a file's first
    -- records and a string later must not be typed from the nulls.
    sample_size = -1
);
