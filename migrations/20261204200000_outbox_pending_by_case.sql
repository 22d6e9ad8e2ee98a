-- Outbox claims hand out a case's pending messages of one topic one at a time, oldest
-- first (workers claim batches and deliver them concurrently; a case's notifications
-- must still arrive in order). The claim asks, for each candidate, whether an older
-- pending message of the same case and topic exists: this index answers it.
CREATE INDEX outbox_pending_by_case ON outbox (case_id, topic, created_at, id)
    WHERE delivered_at IS NULL AND failed_at IS NULL;
COMMENT ON INDEX outbox_pending_by_case IS 'Pending messages by case and topic in write order: a claim skips a message while an older pending one of its case and topic exists.';
