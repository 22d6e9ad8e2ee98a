-- Outbox indexes that a plan made on young statistics cannot mistake (issue 12).
-- A pending index that ANALYZE found empty looks free to the planner until the next
-- ANALYZE, however much it has grown since, and cost ties go to the oldest index:
-- plans cached in a 100/s run read every held message of the topic through
-- outbox_pending (2,000 to 2,600 rows) to replace one case's message, to check that
-- a message is its case's oldest, and to find the next lease to run out. Each of
-- these reads now spells the pending state as coalesce(delivered_at, failed_at) IS
-- NULL, and only its own index below has that predicate (case_store::queue::OUTBOX
-- pending_spelled, case_store::messages::enqueue_superseding).

-- The held messages a later message about the same case may replace, by case and key.
CREATE INDEX outbox_held ON outbox (case_id, supersede_key)
    WHERE supersede_key IS NOT NULL AND coalesce(delivered_at, failed_at) IS NULL AND attempts = 0;
COMMENT ON INDEX outbox_held IS 'Held messages never attempted, by case and key: what a later message about the case replaces.';
DROP INDEX outbox_pending_by_supersede_key;

-- A case's pending messages of a topic in write order: the claim's in-order check.
CREATE INDEX outbox_pending_in_order ON outbox (case_id, topic, created_at, id)
    WHERE coalesce(delivered_at, failed_at) IS NULL;
COMMENT ON INDEX outbox_pending_in_order IS 'Pending messages by case and topic in write order: a claim skips a message while an older pending one of its case and topic exists.';
DROP INDEX outbox_pending_by_case;

-- Pending messages being worked on, by lease end: the next due time of a claim.
CREATE INDEX outbox_leased_due ON outbox (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND coalesce(delivered_at, failed_at) IS NULL;
COMMENT ON INDEX outbox_leased_due IS 'Pending messages being worked on, by lease end: the next due time of a claim.';
DROP INDEX outbox_leased;
