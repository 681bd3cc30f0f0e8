-- Version 18: the blob repair command (`yilian repair blobs`) walks the store one key shard at a time
-- (`sha256/ab/...`) and asks the catalog which keys of that shard its rows point to: these indexes
-- make each shard one range scan instead of a scan of every table.
CREATE INDEX instances_by_blob ON instances (blob_key);
CREATE INDEX lab_messages_by_blob ON lab_messages (blob_key);
CREATE INDEX ecg_records_by_blob ON ecg_records (source_blob_key);
