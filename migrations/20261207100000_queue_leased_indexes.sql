-- When the next queue item falls due (issue 12): the claim reads the first unleased
-- item per topic in the order of the pending index, and the first lease to run out
-- among the items being worked on from these indexes, which hold only the items in
-- flight. Before, the due time read every pending item, messages held for the
-- message window included, on every short claim.
CREATE INDEX outbox_leased ON outbox (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND delivered_at IS NULL AND failed_at IS NULL;
COMMENT ON INDEX outbox_leased IS 'Pending messages being worked on, by lease end: the next due time of a claim.';
CREATE INDEX carrier_webhooks_leased ON carrier_webhooks (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND processed_at IS NULL AND failed_at IS NULL;
COMMENT ON INDEX carrier_webhooks_leased IS 'Pending carrier webhooks being worked on, by lease end: the next due time of a claim.';
CREATE INDEX webhook_deliveries_leased ON webhook_deliveries (lease_expires_at)
    WHERE lease_expires_at IS NOT NULL AND status = 'pending';
COMMENT ON INDEX webhook_deliveries_leased IS 'Pending deliveries being worked on, by lease end: the next due time of a claim.';
