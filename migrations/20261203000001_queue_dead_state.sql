-- One leased-queue mechanism (case_store::queue) over the outbox, the inbound carrier
-- webhooks and the outbound deliveries. Every queue now has an attempt ceiling: the
-- attempt that reaches it, or a claim of an item whose last lease expired at it (its
-- worker died mid-work), puts the item in its dead state, where it stays until an admin
-- retries it (POST /v1/agent/admin/dead-letters/{queue}/{id}/retry). The dead state is
-- the existing given-up state of each table, so no column changes meaning:
-- outbox.failed_at, carrier_webhooks.failed_at, webhook_deliveries.status = 'failed'.
-- These indexes serve the dead-letter count (/metrics, dashboard) and listing.

COMMENT ON COLUMN outbox.failed_at IS 'When delivery was given up (the deliverer gave up, or the attempt ceiling was reached): the message is dead until an admin retries it, which clears this.';
COMMENT ON COLUMN outbox.attempts IS 'Delivery attempts so far; also the fencing token of the current lease. Capped by the outbox''s attempt ceiling; reset to 0 by an admin retry.';
COMMENT ON COLUMN carrier_webhooks.failed_at IS 'When processing was given up after the last attempt (the attempt ceiling): the webhook is dead until an admin retries it, which clears this.';
COMMENT ON COLUMN carrier_webhooks.attempts IS 'Processing attempts so far; also the fencing token of the current lease. Capped by the queue''s attempt ceiling; reset to 0 by an admin retry.';
COMMENT ON COLUMN webhook_deliveries.status IS 'pending (to be tried), delivered (a 2xx answer), failed (dead: every attempt used, the attempt ceiling reached, or the endpoint answered 410; an admin may retry it), cancelled (the endpoint was deleted or disabled).';
COMMENT ON COLUMN webhook_deliveries.attempts IS 'Attempts so far; also the fencing token of the current lease. Capped by the queue''s attempt ceiling; reset to 0 by an admin retry.';

CREATE INDEX outbox_dead ON outbox (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX carrier_webhooks_dead ON carrier_webhooks (failed_at) WHERE failed_at IS NOT NULL;
CREATE INDEX webhook_deliveries_dead ON webhook_deliveries (finished_at) WHERE status = 'failed';
