-- The webhook feed's wake-up now rides on the transition's one case_changed
-- notification (its "wake" list names webhook_event_feed while any endpoint is
-- registered; case_store::cases::notify): the trigger only queues the event. A
-- second NOTIFY in the same transaction cost another turn on PostgreSQL's global
-- notification queue lock at every commit.
CREATE OR REPLACE FUNCTION feed_case_event_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL AND deleted_at IS NULL) THEN
        INSERT INTO webhook_event_feed (event_id, seq) VALUES (NEW.id, NEW.seq);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION feed_case_event_to_webhooks() IS 'Queues each new case event for outbound webhooks while any endpoint is registered; the case change notification of the same transaction wakes the webhooks service.';
