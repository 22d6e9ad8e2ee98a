-- Notifications, SLA timers and escalations.
--
-- A follower (the `timers` service) reads case_events in commit-safe order with a
-- durable cursor; for each event, in one transaction with the cursor update, it
-- enqueues the subscriber's message (outbox, deduplicated by the event id) and writes
-- the timers of the state the case entered. Timers are rows, claimed when due.

-- The writing transaction of each event. Events are read in (tx_id, seq) order and
-- only once every transaction with a smaller id has ended
-- (pg_snapshot_xmin(pg_current_snapshot())), so an event that commits late, with a
-- smaller seq than one already read, is never skipped. Rows written before this
-- migration have NULL and are not followed.
ALTER TABLE case_events ADD COLUMN tx_id bigint;
ALTER TABLE case_events ALTER COLUMN tx_id SET DEFAULT (pg_current_xact_id()::text::bigint);
COMMENT ON COLUMN case_events.tx_id IS 'Id of the transaction that wrote the row (pg_current_xact_id); followers read the log in (tx_id, seq) order below the oldest running transaction. NULL for rows older than the follower.';
CREATE INDEX case_events_follow ON case_events (tx_id, seq) WHERE tx_id IS NOT NULL;
-- Recent time-in-stage statistics (ETA) read the last days of the log.
CREATE INDEX case_events_at ON case_events (at);

CREATE TABLE event_cursors (
    consumer   text        PRIMARY KEY CHECK (consumer ~ '^[a-z][a-z0-9_.-]*$'),
    tx_id      bigint      NOT NULL DEFAULT 0 CHECK (tx_id >= 0),
    seq        bigint      NOT NULL DEFAULT 0 CHECK (seq >= 0),
    updated_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE event_cursors IS 'Durable positions of the followers of case_events: each consumer has read every event up to (tx_id, seq). Moved in the same transaction as the follower''s writes.';
COMMENT ON COLUMN event_cursors.consumer IS 'Who follows the log (e.g. case-timers).';
COMMENT ON COLUMN event_cursors.tx_id IS 'tx_id of the last event read.';
COMMENT ON COLUMN event_cursors.seq IS 'seq of the last event read.';
COMMENT ON COLUMN event_cursors.updated_at IS 'When the cursor last moved.';
INSERT INTO event_cursors (consumer) VALUES ('case-timers');

-- Escalation is an attribute of the case, not a state.
ALTER TABLE reactivation_cases
    ADD COLUMN escalation_level smallint NOT NULL DEFAULT 0 CHECK (escalation_level BETWEEN 0 AND 10);
ALTER TABLE reactivation_cases ADD COLUMN escalated_at timestamptz;
ALTER TABLE reactivation_cases ADD COLUMN escalated_state case_state;
ALTER TABLE reactivation_cases ADD COLUMN escalated_version integer;
COMMENT ON COLUMN reactivation_cases.escalation_level IS 'Supervisor escalation of the current stage: 0 none, 1 its SLA ran out, 2 twice its SLA. Reset when the case leaves the stage (other than to wait on the subscriber).';
COMMENT ON COLUMN reactivation_cases.escalated_at IS 'When the current escalation level was reached.';
COMMENT ON COLUMN reactivation_cases.escalated_state IS 'The stage that breached its SLA.';
COMMENT ON COLUMN reactivation_cases.escalated_version IS 'The case version at which the current escalation level was reached; only a later event that leaves the stage ends it.';
CREATE INDEX reactivation_cases_escalated ON reactivation_cases (escalated_at) WHERE escalation_level > 0;

CREATE TABLE case_timers (
    id           uuid        PRIMARY KEY,
    case_id      uuid        NOT NULL REFERENCES reactivation_cases (id),
    case_version integer     NOT NULL CHECK (case_version >= 1),
    state        case_state  NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('reminder', 'escalation', 'deadline')),
    ordinal      smallint    NOT NULL CHECK (ordinal >= 1),
    due_at       timestamptz NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_at     timestamptz,
    outcome      text        CHECK (outcome IN ('reminded', 'escalated', 'expired', 'closed', 'stale', 'skipped')),
    UNIQUE (case_id, case_version, kind, ordinal),
    CHECK ((fired_at IS NULL) = (outcome IS NULL))
);
COMMENT ON TABLE case_timers IS 'Durable timers of a case: reminders, SLA escalations and deadlines, written when the case enters a state and fired once when due (claimed with SKIP LOCKED). A timer of an older case version is discarded when it fires.';
COMMENT ON COLUMN case_timers.id IS 'Timer id (UUIDv7); reminders are deduplicated by it.';
COMMENT ON COLUMN case_timers.case_id IS 'The case.';
COMMENT ON COLUMN case_timers.case_version IS 'The case version (state entry) the timer belongs to.';
COMMENT ON COLUMN case_timers.state IS 'The state the case entered at that version.';
COMMENT ON COLUMN case_timers.kind IS 'reminder (to the subscriber), escalation (SLA breach) or deadline (expire or close).';
COMMENT ON COLUMN case_timers.ordinal IS 'Reminder number or escalation level; 1 for a deadline.';
COMMENT ON COLUMN case_timers.due_at IS 'When it fires.';
COMMENT ON COLUMN case_timers.created_at IS 'When it was written.';
COMMENT ON COLUMN case_timers.fired_at IS 'The clock reading at which it fired; NULL while pending.';
COMMENT ON COLUMN case_timers.outcome IS 'What firing did: reminded, escalated, expired, closed, stale (the case had moved on) or skipped (nothing left to do).';
CREATE INDEX case_timers_due ON case_timers (due_at) WHERE fired_at IS NULL;
CREATE INDEX case_timers_by_case ON case_timers (case_id, case_version);
