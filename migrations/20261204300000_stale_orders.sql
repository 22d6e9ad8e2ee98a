-- Stale orders cannot move a case (issue 13 item 3).
-- A retry's order names the order it replaces; the previous order is cancelled at the
-- carrier before the new one is sent ('cancelled'); a retry order that is never sent
-- because the previous order completed after all is 'withdrawn'. A case's current order
-- is its newest order that is not withdrawn.
ALTER TABLE provisioning_orders DROP CONSTRAINT provisioning_orders_state_check;
ALTER TABLE provisioning_orders ADD CONSTRAINT provisioning_orders_state_check
    CHECK (state IN ('pending', 'acknowledged', 'inProgress', 'completed', 'failed', 'cancelled', 'withdrawn'));
ALTER TABLE provisioning_orders ADD COLUMN supersedes uuid REFERENCES provisioning_orders (id);
COMMENT ON COLUMN provisioning_orders.supersedes IS 'The order this one replaces (set by retry_provisioning): it is cancelled at the carrier before this one is sent; NULL for a first order.';
COMMENT ON COLUMN provisioning_orders.state IS 'Last known order state: pending (not yet acknowledged), then the carrier''s TMF641 states (acknowledged, inProgress, completed, failed, cancelled); withdrawn: a retry order never sent because the order it replaced completed after all.';
CREATE INDEX provisioning_orders_current ON provisioning_orders (case_id, created_at DESC, id DESC) WHERE state <> 'withdrawn';
