-- Carrier webhooks both ways. Inbound: every verified carrier webhook is stored once
-- (deduplicated by its webhook-id) and processed from this table by the webhooks
-- service. Outbound: endpoints registered by admins, one delivery per matching case
-- event and endpoint, and the log of every delivery attempt.

CREATE TABLE carrier_webhooks (
    id               text        PRIMARY KEY CHECK (length(id) BETWEEN 1 AND 255),
    type             text        NOT NULL CHECK (type IN ('subscriber.suspended', 'subscriber.signals', 'provisioning.completed')),
    received_at      timestamptz NOT NULL DEFAULT now(),
    payload          jsonb       NOT NULL,
    processed_at     timestamptz,
    error            text        CHECK (length(error) <= 500),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    available_at     timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    failed_at        timestamptz,
    CHECK (processed_at IS NULL OR failed_at IS NULL)
);
COMMENT ON TABLE carrier_webhooks IS 'Every verified inbound carrier webhook, once: the primary key is the sender''s webhook-id, so a redelivery is acknowledged and not stored or processed again. Also the processing queue (claimed with FOR UPDATE SKIP LOCKED, a lease and attempts as fencing token).';
COMMENT ON COLUMN carrier_webhooks.id IS 'The webhook-id header (the sender''s message id; the replay-protection key).';
COMMENT ON COLUMN carrier_webhooks.type IS 'Event type: subscriber.suspended, subscriber.signals or provisioning.completed.';
COMMENT ON COLUMN carrier_webhooks.received_at IS 'When the gateway stored it.';
COMMENT ON COLUMN carrier_webhooks.payload IS 'The verified body as JSON ({type, timestamp, data}). Holds the subscriber''s number (personal data: never logged).';
COMMENT ON COLUMN carrier_webhooks.processed_at IS 'When the webhooks service processed it; NULL while queued. With error set: processed but ignored (the reason is in error).';
COMMENT ON COLUMN carrier_webhooks.error IS 'Why processing ignored it or the last processing error, without personal data.';
COMMENT ON COLUMN carrier_webhooks.attempts IS 'Processing attempts so far; also the fencing token of the current lease.';
COMMENT ON COLUMN carrier_webhooks.available_at IS 'Not processed before this time (retry back-off).';
COMMENT ON COLUMN carrier_webhooks.lease_owner IS 'Worker processing it, or NULL.';
COMMENT ON COLUMN carrier_webhooks.lease_expires_at IS 'When that worker''s lease ends.';
COMMENT ON COLUMN carrier_webhooks.failed_at IS 'When processing was given up after the last attempt.';
CREATE INDEX carrier_webhooks_queued ON carrier_webhooks (available_at)
    WHERE processed_at IS NULL AND failed_at IS NULL;

CREATE TABLE carrier_suspension_notices (
    id           uuid        PRIMARY KEY,
    webhook_id   text        NOT NULL UNIQUE REFERENCES carrier_webhooks (id),
    msisdn       text        NOT NULL CHECK (msisdn ~ '^\+861[3-9][0-9]{9}$'),
    reason       text        NOT NULL CHECK (length(reason) BETWEEN 1 AND 100),
    suspended_at timestamptz NOT NULL,
    received_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE carrier_suspension_notices IS 'Suspensions the carrier announced (subscriber.suspended webhooks): the product can tell a subscriber why before they ask.';
COMMENT ON COLUMN carrier_suspension_notices.id IS 'Notice id (UUIDv7).';
COMMENT ON COLUMN carrier_suspension_notices.webhook_id IS 'The carrier webhook it came from (one notice per webhook).';
COMMENT ON COLUMN carrier_suspension_notices.msisdn IS 'The suspended number in E.164. Personal data: never logged.';
COMMENT ON COLUMN carrier_suspension_notices.reason IS 'The carrier''s suspension reason code.';
COMMENT ON COLUMN carrier_suspension_notices.suspended_at IS 'When the carrier suspended the number.';
COMMENT ON COLUMN carrier_suspension_notices.received_at IS 'When the notice was recorded.';
CREATE INDEX carrier_suspension_notices_by_msisdn ON carrier_suspension_notices (msisdn, suspended_at);

CREATE TABLE webhook_endpoints (
    id              uuid        PRIMARY KEY,
    url             text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    event_types     text[]      NOT NULL CHECK (cardinality(event_types) >= 1),
    secret_sealed   bytea,
    created_by      uuid        REFERENCES agents (id),
    created_at      timestamptz NOT NULL DEFAULT now(),
    disabled_at     timestamptz,
    disabled_reason text        CHECK (length(disabled_reason) <= 500),
    deleted_at      timestamptz,
    CHECK ((secret_sealed IS NULL) = (deleted_at IS NOT NULL))
);
COMMENT ON TABLE webhook_endpoints IS 'Receivers of outbound webhooks (carrier systems), registered by admins. Deleting one keeps the row and its delivery log but destroys its secret.';
COMMENT ON COLUMN webhook_endpoints.id IS 'Endpoint id (UUIDv7).';
COMMENT ON COLUMN webhook_endpoints.url IS 'Where deliveries are POSTed (http or https; checked against SSRF at registration and before every delivery).';
COMMENT ON COLUMN webhook_endpoints.event_types IS 'The event types it subscribed to, e.g. case.state_changed.';
COMMENT ON COLUMN webhook_endpoints.secret_sealed IS 'The endpoint''s whsec_ signing secret, AES-256-GCM encrypted under the key derived from REACTIVATION_SECRET_KEY with the endpoint id as associated data. NULL once deleted.';
COMMENT ON COLUMN webhook_endpoints.created_by IS 'The admin who registered it.';
COMMENT ON COLUMN webhook_endpoints.created_at IS 'When it was registered.';
COMMENT ON COLUMN webhook_endpoints.disabled_at IS 'When deliveries stopped because the receiver answered 410 Gone; NULL while enabled.';
COMMENT ON COLUMN webhook_endpoints.disabled_reason IS 'Why it was disabled.';
COMMENT ON COLUMN webhook_endpoints.deleted_at IS 'When an admin deleted it; NULL while registered.';

CREATE TABLE webhook_event_feed (
    event_id  uuid        PRIMARY KEY REFERENCES case_events (id),
    seq       bigint      NOT NULL,
    queued_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE webhook_event_feed IS 'Case events waiting to be fanned out into deliveries, written by a trigger in the transaction of the transition itself (so none is skipped, whatever order transactions commit in); the webhooks service deletes each row in the transaction that creates its deliveries.';
COMMENT ON COLUMN webhook_event_feed.event_id IS 'The case_events row.';
COMMENT ON COLUMN webhook_event_feed.seq IS 'Its case_events.seq, for fan-out in log order.';
COMMENT ON COLUMN webhook_event_feed.queued_at IS 'When it was queued.';

CREATE FUNCTION feed_case_event_to_webhooks() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL AND deleted_at IS NULL) THEN
        INSERT INTO webhook_event_feed (event_id, seq) VALUES (NEW.id, NEW.seq);
        PERFORM pg_notify('webhook_event_feed', NEW.seq::text);
    END IF;
    RETURN NULL;
END;
$$;
COMMENT ON FUNCTION feed_case_event_to_webhooks() IS 'Queues each new case event for outbound webhooks while any endpoint is registered, and wakes the webhooks service.';
CREATE TRIGGER case_events_feed_webhooks
    AFTER INSERT ON case_events
    FOR EACH ROW EXECUTE FUNCTION feed_case_event_to_webhooks();

CREATE TABLE webhook_deliveries (
    id               uuid        PRIMARY KEY,
    endpoint_id      uuid        NOT NULL REFERENCES webhook_endpoints (id),
    event_id         uuid        NOT NULL REFERENCES case_events (id),
    event_type       text        NOT NULL,
    payload          jsonb       NOT NULL,
    status           text        NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'delivered', 'failed', 'cancelled')),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    last_status      integer     CHECK (last_status BETWEEN 100 AND 599),
    last_error       text        CHECK (length(last_error) <= 500),
    created_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    UNIQUE (endpoint_id, event_id),
    CHECK ((status = 'pending') = (finished_at IS NULL))
);
COMMENT ON TABLE webhook_deliveries IS 'One outbound webhook message to one endpoint: a case event, signed per Standard Webhooks with the endpoint''s secret, delivered at least once on the retry schedule. The id is the webhook-id header (the same on every retry).';
COMMENT ON COLUMN webhook_deliveries.id IS 'Message id (UUIDv7), sent as webhook-id.';
COMMENT ON COLUMN webhook_deliveries.endpoint_id IS 'The receiving endpoint.';
COMMENT ON COLUMN webhook_deliveries.event_id IS 'The case event it reports.';
COMMENT ON COLUMN webhook_deliveries.event_type IS 'case.opened or case.state_changed.';
COMMENT ON COLUMN webhook_deliveries.payload IS 'The body sent: {type, timestamp, data: {case_id, from, to, event, version, at}}. No personal data.';
COMMENT ON COLUMN webhook_deliveries.status IS 'pending (to be tried), delivered (a 2xx answer), failed (every attempt used, or the endpoint answered 410), cancelled (the endpoint was deleted or disabled).';
COMMENT ON COLUMN webhook_deliveries.attempts IS 'Attempts so far; also the fencing token of the current lease.';
COMMENT ON COLUMN webhook_deliveries.next_attempt_at IS 'Not tried before this time (the retry schedule).';
COMMENT ON COLUMN webhook_deliveries.lease_owner IS 'Worker sending it, or NULL.';
COMMENT ON COLUMN webhook_deliveries.lease_expires_at IS 'When that worker''s lease ends.';
COMMENT ON COLUMN webhook_deliveries.last_status IS 'HTTP status of the last answer, if there was one.';
COMMENT ON COLUMN webhook_deliveries.last_error IS 'The last failure (status, time-out, refused destination), without personal data.';
COMMENT ON COLUMN webhook_deliveries.created_at IS 'When it was created from the event.';
COMMENT ON COLUMN webhook_deliveries.finished_at IS 'When it stopped being pending.';
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX webhook_deliveries_by_endpoint ON webhook_deliveries (endpoint_id, created_at);

CREATE TABLE webhook_delivery_attempts (
    delivery_id  uuid        NOT NULL REFERENCES webhook_deliveries (id),
    attempt      integer     NOT NULL CHECK (attempt >= 1),
    attempted_at timestamptz NOT NULL DEFAULT now(),
    status_code  integer     CHECK (status_code BETWEEN 100 AND 599),
    error        text        CHECK (length(error) <= 500),
    duration_ms  integer     NOT NULL CHECK (duration_ms >= 0),
    PRIMARY KEY (delivery_id, attempt)
);
COMMENT ON TABLE webhook_delivery_attempts IS 'The delivery log: every attempt to deliver an outbound webhook and how it ended.';
COMMENT ON COLUMN webhook_delivery_attempts.delivery_id IS 'The delivery.';
COMMENT ON COLUMN webhook_delivery_attempts.attempt IS 'Attempt number (1 for the first).';
COMMENT ON COLUMN webhook_delivery_attempts.attempted_at IS 'When the attempt ended.';
COMMENT ON COLUMN webhook_delivery_attempts.status_code IS 'The receiver''s HTTP status, NULL when there was no answer.';
COMMENT ON COLUMN webhook_delivery_attempts.error IS 'What went wrong (no answer, refused destination, non-2xx), NULL on success.';
COMMENT ON COLUMN webhook_delivery_attempts.duration_ms IS 'How long the attempt took, in milliseconds.';
