-- Agent sessions and lock-out, notes, outcome labels, and the hash-chained audit log.

ALTER TABLE agents ADD COLUMN failed_logins integer NOT NULL DEFAULT 0 CHECK (failed_logins >= 0);
ALTER TABLE agents ADD COLUMN locked_until timestamptz;
COMMENT ON COLUMN agents.failed_logins IS 'Consecutive failed logins; reset by a successful one.';
COMMENT ON COLUMN agents.locked_until IS 'Logins refused until then after too many failures.';

CREATE TABLE agent_sessions (
    token_hash  bytea       PRIMARY KEY CHECK (length(token_hash) = 32),
    agent_id    uuid        NOT NULL REFERENCES agents (id),
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz
);
COMMENT ON TABLE agent_sessions IS 'Agent login sessions. Only the SHA-256 of the session token is stored.';
COMMENT ON COLUMN agent_sessions.token_hash IS 'SHA-256 of the bearer/session token.';
COMMENT ON COLUMN agent_sessions.agent_id IS 'The agent.';
COMMENT ON COLUMN agent_sessions.created_at IS 'Login time.';
COMMENT ON COLUMN agent_sessions.expires_at IS 'The session is invalid after this time.';
COMMENT ON COLUMN agent_sessions.revoked_at IS 'Logout time; NULL while active.';
CREATE INDEX agent_sessions_by_agent ON agent_sessions (agent_id);

CREATE TABLE case_notes (
    id          uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    agent_id    uuid        NOT NULL REFERENCES agents (id),
    body        text        NOT NULL CHECK (length(body) BETWEEN 1 AND 4000),
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE case_notes IS 'Internal agent notes on a case; never shown to the subscriber.';
COMMENT ON COLUMN case_notes.id IS 'Note id.';
COMMENT ON COLUMN case_notes.case_id IS 'The case.';
COMMENT ON COLUMN case_notes.agent_id IS 'Who wrote it.';
COMMENT ON COLUMN case_notes.body IS 'The note.';
COMMENT ON COLUMN case_notes.created_at IS 'When.';
CREATE INDEX case_notes_by_case ON case_notes (case_id, created_at);

CREATE TABLE outcome_labels (
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    reason_code text        NOT NULL,
    label       text        NOT NULL CHECK (label IN ('false_positive')),
    decided_by  uuid        NOT NULL REFERENCES agents (id),
    labelled_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, reason_code)
);
COMMENT ON TABLE outcome_labels IS 'Feedback to the carrier''s rules: a flagged case approved after review labels each reason code that flagged it a false positive.';
COMMENT ON COLUMN outcome_labels.case_id IS 'The case.';
COMMENT ON COLUMN outcome_labels.reason_code IS 'The rule (reason code) that flagged it.';
COMMENT ON COLUMN outcome_labels.label IS 'false_positive.';
COMMENT ON COLUMN outcome_labels.decided_by IS 'The analyst whose approval made the label.';
COMMENT ON COLUMN outcome_labels.labelled_at IS 'When.';

CREATE TABLE audit_log (
    seq        bigint      PRIMARY KEY CHECK (seq >= 1),
    at         timestamptz NOT NULL,
    actor_role actor_role  NOT NULL,
    actor_id   text        NOT NULL,
    action     text        NOT NULL CHECK (action ~ '^[a-z_.]+$'),
    case_id    uuid,
    detail     jsonb       NOT NULL,
    reason     text,
    prev_hash  bytea       NOT NULL CHECK (length(prev_hash) = 32),
    hash       bytea       NOT NULL UNIQUE CHECK (length(hash) = 32)
);
COMMENT ON TABLE audit_log IS 'Append-only, hash-chained record of every agent read of personal data and every decision. hash = SHA-256(prev_hash || canonical row); `reactivation audit verify` walks the chain.';
COMMENT ON COLUMN audit_log.seq IS 'Gap-free position in the chain (appends are serialised by an advisory lock).';
COMMENT ON COLUMN audit_log.at IS 'When it happened (microsecond precision, part of the hash).';
COMMENT ON COLUMN audit_log.actor_role IS 'Role the actor used.';
COMMENT ON COLUMN audit_log.actor_id IS 'Agent id or service name.';
COMMENT ON COLUMN audit_log.action IS 'What was done, e.g. case.view, case.unmask, case.decision, agent.login.';
COMMENT ON COLUMN audit_log.case_id IS 'The case concerned, if any (ids only, never personal data).';
COMMENT ON COLUMN audit_log.detail IS 'Structured detail without personal data.';
COMMENT ON COLUMN audit_log.reason IS 'Why, as given by the actor (required for unmasking).';
COMMENT ON COLUMN audit_log.prev_hash IS 'Hash of the previous row (32 zero bytes for the first).';
COMMENT ON COLUMN audit_log.hash IS 'SHA-256 over prev_hash and this row''s canonical form.';

CREATE TRIGGER audit_log_no_update_or_delete
    BEFORE UPDATE OR DELETE ON audit_log
    FOR EACH ROW EXECUTE FUNCTION refuse_change();
CREATE TRIGGER audit_log_no_truncate
    BEFORE TRUNCATE ON audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_change();
