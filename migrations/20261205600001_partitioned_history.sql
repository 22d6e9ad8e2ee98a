-- Partitioned history (issue 15 item 3).
--
-- case_events and audit_log become range-partitioned by time (`at`, one partition per
-- calendar month in UTC, in the schema `history`, plus a DEFAULT partition so that an
-- insert never fails), so that old months can be detached and archived
-- (`reactivation history detach`). The data is copied over; the append-only rules stay
-- on every partition: the UPDATE/DELETE row triggers of the parents are cloned onto
-- each partition, and every partition gets its own TRUNCATE trigger (a statement
-- trigger on the parent does not fire for a TRUNCATE of one partition).
--
-- Keys of a partitioned table must include the partition key:
--   case_events: PRIMARY KEY (id, at), UNIQUE (seq, at); (case_id, version) is a plain
--     index (a case's version is made unique by the optimistic-concurrency update of
--     reactivation_cases, which every transition goes through). Foreign keys can no
--     longer point at case_events (id): outbox.event_id, webhook_event_feed.event_id and
--     webhook_deliveries.event_id keep the id without the constraint (the log is
--     append-only, so an id written there never disappears while its month is attached).
--   audit_log: PRIMARY KEY (seq, at); hash is no longer declared unique (the chain
--     itself, checked by `audit verify`, makes every hash depend on all before it).
--
-- Pruning (issue 15 item 3) deletes processed carrier webhooks; a suspension notice keeps
-- the id of the webhook it came from without the foreign key.

CREATE SCHEMA history;
COMMENT ON SCHEMA history IS 'Monthly partitions of case_events and audit_log (and their DEFAULT partitions), created ahead by the timers service; detached months move to history_archive.';
CREATE SCHEMA history_archive;
COMMENT ON SCHEMA history_archive IS 'Partitions detached by `reactivation history detach`: standalone, append-only tables waiting to be dumped (pg_dump) and dropped by the operator.';

ALTER TABLE outbox DROP CONSTRAINT outbox_event_id_fkey;
ALTER TABLE webhook_event_feed DROP CONSTRAINT webhook_event_feed_event_id_fkey;
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_event_id_fkey;
ALTER TABLE carrier_suspension_notices DROP CONSTRAINT carrier_suspension_notices_webhook_id_fkey;
COMMENT ON COLUMN outbox.event_id IS 'The transition (case_events.id) that produced the message, if any. No foreign key: case_events is partitioned by time.';
COMMENT ON COLUMN webhook_event_feed.event_id IS 'The case_events row (no foreign key: case_events is partitioned by time).';
COMMENT ON COLUMN webhook_deliveries.event_id IS 'The case event it reports (case_events.id; no foreign key: case_events is partitioned by time).';
COMMENT ON COLUMN carrier_suspension_notices.webhook_id IS 'The carrier webhook it came from (one notice per webhook). No foreign key: processed carrier webhooks are pruned after their retention.';

-- ------------------------------------------------------------------ case_events

ALTER TABLE case_events RENAME TO case_events_unpartitioned;
ALTER INDEX case_events_pkey RENAME TO case_events_unpartitioned_pkey;
ALTER INDEX case_events_seq_key RENAME TO case_events_unpartitioned_seq_key;
ALTER INDEX case_events_case_id_version_key RENAME TO case_events_unpartitioned_case_id_version_key;
ALTER INDEX case_events_follow RENAME TO case_events_unpartitioned_follow;
ALTER INDEX case_events_at RENAME TO case_events_unpartitioned_at;

CREATE TABLE case_events (
    id          uuid        NOT NULL,
    seq         bigint      GENERATED ALWAYS AS IDENTITY,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    version     integer     NOT NULL,
    from_state  case_state,
    to_state    case_state  NOT NULL,
    event       case_event  NOT NULL,
    actor_role  actor_role  NOT NULL,
    actor_id    text        NOT NULL CHECK (length(actor_id) BETWEEN 1 AND 200),
    reason      text        CHECK (length(reason) <= 2000),
    at          timestamptz NOT NULL DEFAULT now(),
    tx_id       bigint      DEFAULT (pg_current_xact_id()::text::bigint),
    PRIMARY KEY (id, at),
    UNIQUE (seq, at),
    CHECK ((event = 'opened') = (from_state IS NULL))
) PARTITION BY RANGE (at);
COMMENT ON TABLE case_events IS 'Append-only log: one row per transition of a case (and one ''opened'' row). UPDATE, DELETE and TRUNCATE are refused by triggers (on every partition). Partitioned by month of `at` (schema history); old months are detached with `reactivation history detach`.';
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
COMMENT ON COLUMN case_events.at IS 'Commit time of the transition; the partition key.';
COMMENT ON COLUMN case_events.tx_id IS 'Id of the transaction that wrote the row (pg_current_xact_id); followers read the log in (tx_id, seq) order below the oldest running transaction. NULL for rows older than the follower.';
-- Per-partition indexes (created on every partition, present and future).
CREATE INDEX case_events_by_case ON case_events (case_id, version);
CREATE INDEX case_events_follow ON case_events (tx_id, seq) WHERE tx_id IS NOT NULL;
CREATE INDEX case_events_at ON case_events (at);

CREATE TRIGGER case_events_no_update_or_delete
    BEFORE UPDATE OR DELETE ON case_events
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER case_events_no_truncate
    BEFORE TRUNCATE ON case_events
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ------------------------------------------------------------------ audit_log

ALTER TABLE audit_log RENAME TO audit_log_unpartitioned;
ALTER INDEX audit_log_pkey RENAME TO audit_log_unpartitioned_pkey;
ALTER INDEX audit_log_hash_key RENAME TO audit_log_unpartitioned_hash_key;
ALTER INDEX audit_log_by_case RENAME TO audit_log_unpartitioned_by_case;
ALTER INDEX audit_log_by_actor RENAME TO audit_log_unpartitioned_by_actor;
ALTER INDEX audit_log_by_time RENAME TO audit_log_unpartitioned_by_time;

CREATE TABLE audit_log (
    seq        bigint      NOT NULL CHECK (seq >= 1),
    at         timestamptz NOT NULL,
    actor_role actor_role  NOT NULL,
    actor_id   text        NOT NULL,
    action     text        NOT NULL CHECK (action ~ '^[a-z_.]+$'),
    case_id    uuid,
    detail     jsonb       NOT NULL,
    reason     text,
    prev_hash  bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea       NOT NULL CHECK (length(hash) = 32),
    PRIMARY KEY (seq, at)
) PARTITION BY RANGE (at);
COMMENT ON TABLE audit_log IS 'Append-only, hash-chained record of every agent read of personal data and every decision. hash = SHA-256(prev_hash || canonical row); `reactivation audit verify` walks the chain (from the first attached row, or from the checkpoint anchoring a detached range). Partitioned by month of `at` (schema history).';
COMMENT ON COLUMN audit_log.seq IS 'Gap-free position in the chain (appends are serialised by an advisory lock).';
COMMENT ON COLUMN audit_log.at IS 'When it happened (microsecond precision, part of the hash); the partition key.';
COMMENT ON COLUMN audit_log.actor_role IS 'Role the actor used.';
COMMENT ON COLUMN audit_log.actor_id IS 'Agent id or service name.';
COMMENT ON COLUMN audit_log.action IS 'What was done, e.g. case.view, case.unmask, case.decision, agent.login.';
COMMENT ON COLUMN audit_log.case_id IS 'The case concerned, if any (ids only, never personal data).';
COMMENT ON COLUMN audit_log.detail IS 'Structured detail without personal data.';
COMMENT ON COLUMN audit_log.reason IS 'Why, as given by the actor (required for unmasking).';
COMMENT ON COLUMN audit_log.prev_hash IS 'Hash of the previous row (32 zero bytes for the first).';
COMMENT ON COLUMN audit_log.hash IS 'SHA-256 over prev_hash and this row''s canonical form.';
CREATE INDEX audit_log_by_case ON audit_log (case_id, seq) WHERE case_id IS NOT NULL;
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ------------------------------------------------------------------ partitions

CREATE FUNCTION history_ensure_partitions(p_from date, p_months integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    created integer := 0;
    month   date;
    parent  text;
    part    text;
BEGIN
    IF p_months IS NULL OR p_months < 1 OR p_months > 240 THEN
        RAISE EXCEPTION 'history_ensure_partitions: months must be between 1 and 240, got %', p_months
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- Two runners (two timers services) never create the same partition at once.
    PERFORM pg_advisory_xact_lock(hashtext('history_ensure_partitions'));
    FOREACH parent IN ARRAY ARRAY['case_events', 'audit_log'] LOOP
        part := parent || '_default';
        IF to_regclass(format('history.%I', part)) IS NULL THEN
            EXECUTE format('CREATE TABLE history.%I PARTITION OF public.%I DEFAULT', part, parent);
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON history.%I FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()',
                           part || '_no_truncate', part);
            EXECUTE format('COMMENT ON TABLE history.%I IS %L', part,
                           'Rows of ' || parent || ' outside every monthly partition (none while partitions are created ahead).');
            created := created + 1;
        END IF;
        FOR i IN 0 .. p_months - 1 LOOP
            month := (date_trunc('month', p_from) + make_interval(months => i))::date;
            part := parent || '_p' || to_char(month, 'YYYYMM');
            CONTINUE WHEN to_regclass(format('history.%I', part)) IS NOT NULL;
            BEGIN
                -- Bounds in UTC, whatever the session's time zone.
                EXECUTE format('CREATE TABLE history.%I PARTITION OF public.%I FOR VALUES FROM (%L) TO (%L)',
                               part, parent, month::text || ' 00:00:00+00',
                               (month + interval '1 month')::date::text || ' 00:00:00+00');
            EXCEPTION WHEN check_violation THEN
                -- The DEFAULT partition already holds rows of this month: they cannot be
                -- moved (append-only), so the month stays in the DEFAULT partition.
                RAISE WARNING 'history: % not created: the DEFAULT partition of % holds rows of %',
                    part, parent, to_char(month, 'YYYY-MM');
                CONTINUE;
            END;
            EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON history.%I FOR EACH STATEMENT EXECUTE FUNCTION refuse_change()',
                           part || '_no_truncate', part);
            EXECUTE format('COMMENT ON TABLE history.%I IS %L', part,
                           'Rows of ' || parent || ' of ' || to_char(month, 'YYYY-MM') || ' (UTC).');
            created := created + 1;
        END LOOP;
    END LOOP;
    RETURN created;
END;
$$;
COMMENT ON FUNCTION history_ensure_partitions(date, integer) IS 'Creates the missing monthly partitions (UTC months) of case_events and audit_log for p_months months from the month of p_from, and their DEFAULT partitions; each with its own TRUNCATE guard. Returns how many tables it created. Called by the timers service at start and on every housekeeping pass.';

-- Partitions for every month of the existing rows and the next three months.
SELECT history_ensure_partitions(
    m.first,
    (extract(year FROM age(date_trunc('month', now()), m.first)) * 12
     + extract(month FROM age(date_trunc('month', now()), m.first)))::integer + 4)
FROM (SELECT (date_trunc('month', least(
            (SELECT min(at) FROM case_events_unpartitioned),
            (SELECT min(at) FROM audit_log_unpartitioned),
            now()) AT TIME ZONE 'UTC'))::date AS first) m;

INSERT INTO case_events (id, seq, case_id, version, from_state, to_state, event, actor_role, actor_id, reason, at, tx_id)
OVERRIDING SYSTEM VALUE
SELECT id, seq, case_id, version, from_state, to_state, event, actor_role, actor_id, reason, at, tx_id
FROM case_events_unpartitioned;
SELECT setval(pg_get_serial_sequence('case_events', 'seq'),
              coalesce((SELECT max(seq) FROM case_events), 0) + 1, false);

INSERT INTO audit_log (seq, at, actor_role, actor_id, action, case_id, detail, reason, prev_hash, hash)
SELECT seq, at, actor_role, actor_id, action, case_id, detail, reason, prev_hash, hash
FROM audit_log_unpartitioned;

-- After the copy: the copied events are not queued for webhooks again.
CREATE TRIGGER case_events_feed_webhooks
    AFTER INSERT ON case_events
    FOR EACH ROW EXECUTE FUNCTION feed_case_event_to_webhooks();

-- The copies are complete: drop the old tables (their append-only triggers go with them).
DROP TABLE case_events_unpartitioned;
DROP TABLE audit_log_unpartitioned;

-- ------------------------------------------------------------------ checkpoints

CREATE TABLE audit_checkpoints (
    id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    seq         bigint      NOT NULL UNIQUE CHECK (seq >= 1),
    hash        bytea       NOT NULL CHECK (length(hash) = 32),
    before      timestamptz NOT NULL,
    rows        bigint      NOT NULL CHECK (rows >= 0),
    partitions  text[]      NOT NULL,
    attested_by bigint      NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    created_by  text        NOT NULL CHECK (length(created_by) BETWEEN 1 AND 200)
);
COMMENT ON TABLE audit_checkpoints IS 'Anchors of the audit chain: the last row (seq and hash) of a range of audit_log that was verified and then detached. `audit verify` starts from the newest checkpoint whose range is no longer attached. Append-only; each checkpoint is also attested by a history.detach row of the chain itself.';
COMMENT ON COLUMN audit_checkpoints.id IS 'Checkpoint number (`audit verify --from-checkpoint`).';
COMMENT ON COLUMN audit_checkpoints.seq IS 'seq of the last audit row of the range.';
COMMENT ON COLUMN audit_checkpoints.hash IS 'hash of that row: the prev_hash the next attached row must carry.';
COMMENT ON COLUMN audit_checkpoints.before IS 'The range: every audit row with at before this time (a month boundary, UTC).';
COMMENT ON COLUMN audit_checkpoints.rows IS 'How many rows of the range were verified when the checkpoint was recorded.';
COMMENT ON COLUMN audit_checkpoints.partitions IS 'The partitions detached with it (now in schema history_archive).';
COMMENT ON COLUMN audit_checkpoints.attested_by IS 'seq of the history.detach audit row, recorded in the same transaction, whose detail names this checkpoint''s seq and hash.';
COMMENT ON COLUMN audit_checkpoints.created_at IS 'When it was recorded.';
COMMENT ON COLUMN audit_checkpoints.created_by IS 'Who recorded it (the command line, as the audit log names it).';
CREATE TRIGGER audit_checkpoints_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();

-- ------------------------------------------------------------------ pruning indexes

-- Each pruning pass reads the oldest finished rows of its table through one of these.
CREATE INDEX outbox_delivered ON outbox (delivered_at) WHERE delivered_at IS NOT NULL;
COMMENT ON INDEX outbox_delivered IS 'Delivered messages by delivery time: the pruning pass deletes the oldest past their retention.';
CREATE INDEX case_timers_fired ON case_timers (fired_at) WHERE fired_at IS NOT NULL;
COMMENT ON INDEX case_timers_fired IS 'Fired timers by firing time, for pruning.';
CREATE INDEX agent_sessions_ended ON agent_sessions ((least(expires_at, revoked_at)));
COMMENT ON INDEX agent_sessions_ended IS 'Sessions by the time they ended (expiry or logout, whichever came first), for pruning.';
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
    WHERE status IN ('delivered', 'cancelled');
COMMENT ON INDEX webhook_deliveries_finished IS 'Delivered or cancelled deliveries by finishing time, for pruning (failed ones wait for an admin).';
CREATE INDEX carrier_webhooks_processed ON carrier_webhooks (processed_at) WHERE processed_at IS NOT NULL;
COMMENT ON INDEX carrier_webhooks_processed IS 'Processed inbound carrier webhooks by processing time, for pruning.';
