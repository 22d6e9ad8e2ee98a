-- The in-order index serves only reads that name a case (issue 12).
-- outbox_pending_in_order and outbox_leased_due carried the same pending predicate,
-- so the due time of the next lease to run out (a read of the leased messages of a
-- topic, with no case) could be served by either. On statistics where both looked
-- alike, the claim's cached plan took the in-order index with the topic as its only
-- condition and read every pending message of the topic, held ones included (2,274
-- rows and 1,705 buffers for one claim at 100/s, auto_explain). With the case in
-- its predicate, the in-order index is usable only by reads with a condition on the
-- case (the claim's in-order check, the replacement of a case's held message), and
-- the leased read has outbox_leased_due alone.
DROP INDEX outbox_pending_in_order;
CREATE INDEX outbox_pending_in_order ON outbox (case_id, topic, created_at, id)
    WHERE case_id IS NOT NULL AND coalesce(delivered_at, failed_at) IS NULL;
COMMENT ON INDEX outbox_pending_in_order IS 'Pending messages of a case by topic in write order: a claim skips a message while an older pending one of its case and topic exists. Only reads that name a case can use it.';
