-- The case lifecycle: the case table, its append-only event log, the outbox and
-- idempotency keys. Mirrors crates/case-domain (enum values must match exactly).

CREATE TYPE case_state AS ENUM (
    'awaiting_identity', 'identity_review', 'awaiting_customer_identity',
    'risk_assessment', 'security_review', 'awaiting_customer_security',
    'provisioning', 'provisioning_failed', 'partially_reactivated', 'rejected',
    'reactivated', 'cancelled', 'expired', 'closed'
);
COMMENT ON TYPE case_state IS 'Where a reactivation case stands; mirrors case_domain::CaseState.';

CREATE TYPE case_event AS ENUM (
    'opened', 'proofs_accepted', 'identity_escalated', 'identity_verified',
    'info_requested', 'customer_responded', 'risk_cleared', 'risk_flagged',
    'risk_refused', 'approved', 'partly_approved', 'rejected', 'appealed',
    'restored', 'partly_restored', 'provisioning_failed', 'provisioning_retried',
    'resolved_manually', 'cancelled', 'expired', 'closed'
);
COMMENT ON TYPE case_event IS 'What happened to a case; mirrors case_domain::CaseEvent.';

CREATE TYPE actor_role AS ENUM (
    'customer', 'cs', 'security', 'technical', 'supervisor', 'admin', 'system'
);
COMMENT ON TYPE actor_role IS 'The role in which an actor caused an event; mirrors case_domain::Role.';

CREATE TABLE reactivation_cases (
    id               uuid        PRIMARY KEY,
    msisdn           text        NOT NULL CHECK (msisdn ~ '^\+861[3-9][0-9]{9}$'),
    state            case_state  NOT NULL DEFAULT 'awaiting_identity',
    version          integer     NOT NULL DEFAULT 1 CHECK (version >= 1),
    channel          text        NOT NULL CHECK (channel IN ('web', 'app', 'hotline', 'store')),
    locale           text        NOT NULL CHECK (locale IN ('zh-CN', 'en')),
    token_hash       bytea       NOT NULL UNIQUE CHECK (length(token_hash) = 32),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    state_entered_at timestamptz NOT NULL DEFAULT now(),
    lease_owner      text,
    lease_expires_at timestamptz,
    attempt          integer     NOT NULL DEFAULT 0 CHECK (attempt >= 0)
);
COMMENT ON TABLE reactivation_cases IS 'One row per reactivation case, holding only its current state; history is in case_events. Changed only by case_store::transition.';
COMMENT ON COLUMN reactivation_cases.id IS 'Case id (UUIDv7, so ids sort by creation time).';
COMMENT ON COLUMN reactivation_cases.msisdn IS 'The suspended number in E.164 (+86 and 11 digits). Personal data: never logged.';
COMMENT ON COLUMN reactivation_cases.state IS 'Current lifecycle state.';
COMMENT ON COLUMN reactivation_cases.version IS 'Optimistic-concurrency version: +1 on every transition; clients send it back as expected_version.';
COMMENT ON COLUMN reactivation_cases.channel IS 'Where the subscriber opened the case: web, app, hotline or store.';
COMMENT ON COLUMN reactivation_cases.locale IS 'The subscriber''s language for messages: zh-CN or en.';
COMMENT ON COLUMN reactivation_cases.token_hash IS 'SHA-256 of the case token given to the subscriber; the token itself is never stored.';
COMMENT ON COLUMN reactivation_cases.created_at IS 'When the case was opened.';
COMMENT ON COLUMN reactivation_cases.updated_at IS 'When the row last changed (transition, claim or release).';
COMMENT ON COLUMN reactivation_cases.state_entered_at IS 'When the case entered its current state: start of the stage clock and of hand-off latency.';
COMMENT ON COLUMN reactivation_cases.lease_owner IS 'Worker (or agent) holding the case, or NULL. Only the holder may write while the lease lasts.';
COMMENT ON COLUMN reactivation_cases.lease_expires_at IS 'When the lease ends; a crashed holder''s case is claimable again after it. With no owner: not claimable before this time (back-off).';
COMMENT ON COLUMN reactivation_cases.attempt IS 'Fencing token: +1 on every claim. Every worker write must present the attempt it claimed.';

-- One open case per number: terminal cases no longer count.
CREATE UNIQUE INDEX reactivation_cases_one_open_per_msisdn
    ON reactivation_cases (msisdn)
    WHERE state NOT IN ('reactivated', 'cancelled', 'expired', 'closed');
-- Claiming: the oldest unleased case in a state.
CREATE INDEX reactivation_cases_claimable
    ON reactivation_cases (state, state_entered_at)
    WHERE state NOT IN ('reactivated', 'cancelled', 'expired', 'closed');

CREATE TABLE case_events (
    id          uuid        PRIMARY KEY,
    seq         bigint      GENERATED ALWAYS AS IDENTITY UNIQUE,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    version     integer     NOT NULL,
    from_state  case_state,
    to_state    case_state  NOT NULL,
    event       case_event  NOT NULL,
    actor_role  actor_role  NOT NULL,
    actor_id    text        NOT NULL CHECK (length(actor_id) BETWEEN 1 AND 200),
    reason      text        CHECK (length(reason) <= 2000),
    at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, version),
    CHECK ((event = 'opened') = (from_state IS NULL))
);
COMMENT ON TABLE case_events IS 'Append-only log: one row per transition of a case (and one ''opened'' row). UPDATE, DELETE and TRUNCATE are refused by triggers.';
COMMENT ON COLUMN case_events.id IS 'Transition id (UUIDv7); outbox rows and notifications are deduplicated by it.';
COMMENT ON COLUMN case_events.seq IS 'Global insertion order, for readers that follow the log.';
COMMENT ON COLUMN case_events.case_id IS 'The case that moved.';
COMMENT ON COLUMN case_events.version IS 'The case version this transition produced (1 for opened).';
COMMENT ON COLUMN case_events.from_state IS 'State before the transition; NULL only for the opened row.';
COMMENT ON COLUMN case_events.to_state IS 'State after the transition.';
COMMENT ON COLUMN case_events.event IS 'The event that caused the transition.';
COMMENT ON COLUMN case_events.actor_role IS 'Role in which the actor acted.';
COMMENT ON COLUMN case_events.actor_id IS 'Agent id, service name or ''subscriber''. Never personal data.';
COMMENT ON COLUMN case_events.reason IS 'Why, in words the subscriber may read (customer-safe reason or agent note).';
COMMENT ON COLUMN case_events.at IS 'Commit time of the transition.';

CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
COMMENT ON FUNCTION refuse_change() IS 'Trigger body that refuses UPDATE, DELETE and TRUNCATE on append-only tables.';

CREATE TRIGGER case_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER case_events_no_truncate
    BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

CREATE TABLE outbox (
    id               uuid        PRIMARY KEY,
    case_id          uuid        REFERENCES reactivation_cases (id),
    event_id         uuid        REFERENCES case_events (id),
    topic            text        NOT NULL CHECK (topic ~ '^[a-z][a-z0-9_.]*$'),
    dedupe_key       text        NOT NULL UNIQUE,
    payload          jsonb       NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    available_at     timestamptz NOT NULL DEFAULT now(),
    attempts         integer     NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    lease_owner      text,
    lease_expires_at timestamptz,
    delivered_at     timestamptz,
    failed_at        timestamptz,
    last_error       text
);
COMMENT ON TABLE outbox IS 'Side effects on other systems (provisioning orders, messages, webhooks), written in the same transaction as the state change and delivered at least once by a worker; the receiver deduplicates by id.';
COMMENT ON COLUMN outbox.id IS 'Message id (UUIDv7); sent as the idempotency key of the external call.';
COMMENT ON COLUMN outbox.case_id IS 'The case the message is about, if any.';
COMMENT ON COLUMN outbox.event_id IS 'The transition that produced the message, if any.';
COMMENT ON COLUMN outbox.topic IS 'Which worker delivers it, e.g. provisioning.order or notification.sms.';
COMMENT ON COLUMN outbox.dedupe_key IS 'Unique key (usually transition id + topic + recipient) so a retried transition cannot enqueue twice.';
COMMENT ON COLUMN outbox.payload IS 'What to send; no raw national ID numbers.';
COMMENT ON COLUMN outbox.created_at IS 'When it was enqueued.';
COMMENT ON COLUMN outbox.available_at IS 'Not delivered before this time (retry back-off).';
COMMENT ON COLUMN outbox.attempts IS 'Delivery attempts so far; also the fencing token of the current lease.';
COMMENT ON COLUMN outbox.lease_owner IS 'Worker currently delivering it, or NULL.';
COMMENT ON COLUMN outbox.lease_expires_at IS 'When that worker''s lease ends.';
COMMENT ON COLUMN outbox.delivered_at IS 'When the receiver confirmed it; NULL while pending.';
COMMENT ON COLUMN outbox.failed_at IS 'When delivery was given up after the last retry.';
COMMENT ON COLUMN outbox.last_error IS 'The last delivery error, without personal data.';
CREATE INDEX outbox_pending ON outbox (topic, available_at) WHERE delivered_at IS NULL AND failed_at IS NULL;

CREATE TABLE idempotency_keys (
    scope           text        NOT NULL CHECK (length(scope) BETWEEN 1 AND 200),
    key             text        NOT NULL CHECK (length(key) BETWEEN 1 AND 255),
    request_hash    bytea       NOT NULL CHECK (length(request_hash) = 32),
    response_status smallint    CHECK (response_status BETWEEN 100 AND 599),
    response_body   jsonb,
    created_at      timestamptz NOT NULL DEFAULT now(),
    completed_at    timestamptz,
    PRIMARY KEY (scope, key),
    CHECK ((completed_at IS NULL) = (response_status IS NULL))
);
COMMENT ON TABLE idempotency_keys IS 'Idempotency-Key records: the first request''s fingerprint and, once done, its response, replayed to retries. Pruned after 24 hours.';
COMMENT ON COLUMN idempotency_keys.scope IS 'The operation and client the key belongs to (keys of different operations never collide).';
COMMENT ON COLUMN idempotency_keys.key IS 'The client''s Idempotency-Key header value.';
COMMENT ON COLUMN idempotency_keys.request_hash IS 'SHA-256 of the canonical request body; another body with the same key is refused (422).';
COMMENT ON COLUMN idempotency_keys.response_status IS 'HTTP status of the stored response; NULL while the first request is in flight (retries get 409).';
COMMENT ON COLUMN idempotency_keys.response_body IS 'The stored response body, replayed to retries.';
COMMENT ON COLUMN idempotency_keys.created_at IS 'When the key was first seen.';
COMMENT ON COLUMN idempotency_keys.completed_at IS 'When the stored response was recorded.';
