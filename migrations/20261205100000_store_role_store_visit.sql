-- Issue 14: the store (营业厅) agent role and the store-visit remedy.
--
-- A case whose tier asks for a store visit (extreme when it opens, or refused online
-- on risk) waits in `awaiting_store_visit` for the subscriber to show the original ID
-- card at a store; a store agent records the in-person check (`store_visit_verified`)
-- and the case goes on to risk assessment. The state waits on the subscriber: no
-- department SLA runs; reminders and an expiry come from the timers service.

ALTER TYPE actor_role ADD VALUE IF NOT EXISTS 'store' AFTER 'cs';
ALTER TYPE case_state ADD VALUE IF NOT EXISTS 'awaiting_store_visit' AFTER 'rejected';
ALTER TYPE case_event ADD VALUE IF NOT EXISTS 'store_visit_required' AFTER 'risk_refused';
ALTER TYPE case_event ADD VALUE IF NOT EXISTS 'store_visit_verified' AFTER 'store_visit_required';

COMMENT ON TYPE actor_role IS 'The role in which an actor caused an event; mirrors case_domain::Role (store: a store agent who sees the subscriber in person).';
