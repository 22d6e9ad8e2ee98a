-- Complaints to the carrier about a case. Each carries its own 15-day clock
-- (《电信用户申诉处理办法》: the regulator takes a complaint only after the carrier
-- answered it or let 15 days pass), raises the case in the agent queues while it is
-- open, and is closed by an agent's answer.

CREATE TABLE case_complaints (
    id          uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    channel     text        NOT NULL CHECK (channel IN ('web', 'app', 'social', 'regulator', 'hotline')),
    body        text        NOT NULL CHECK (char_length(body) BETWEEN 1 AND 2000),
    status      text        NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'answered')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    due_at      timestamptz NOT NULL,
    answer      text        CHECK (char_length(answer) BETWEEN 1 AND 4000),
    answered_at timestamptz,
    answered_by uuid        REFERENCES agents (id),
    CHECK (due_at > created_at),
    CHECK ((status = 'open') = (answer IS NULL AND answered_at IS NULL AND answered_by IS NULL)),
    CHECK (status = 'open' OR (answer IS NOT NULL AND answered_at IS NOT NULL AND answered_by IS NOT NULL))
);
COMMENT ON TABLE case_complaints IS 'Complaints the subscriber made to the carrier about a case. The carrier must answer each within 15 days (due_at) before the subscriber may go to the regulator; while one is open the case is worked first. Rows are never deleted.';
COMMENT ON COLUMN case_complaints.id IS 'Complaint id (UUIDv7: sorts by time).';
COMMENT ON COLUMN case_complaints.case_id IS 'The case complained about.';
COMMENT ON COLUMN case_complaints.channel IS 'Where the subscriber complained: web, app, social, regulator (forwarded by 12300) or hotline.';
COMMENT ON COLUMN case_complaints.body IS 'The subscriber''s complaint, 1 to 2000 characters (free text: may hold personal data; never logged, HTML-escaped in the dossier).';
COMMENT ON COLUMN case_complaints.status IS 'open (waiting for the carrier''s answer) or answered (closed).';
COMMENT ON COLUMN case_complaints.created_at IS 'When the complaint was made: start of its clock.';
COMMENT ON COLUMN case_complaints.due_at IS 'When the carrier must have answered: created_at + 15 days. After it, an open complaint may go to the regulator.';
COMMENT ON COLUMN case_complaints.answer IS 'The carrier''s answer, 1 to 4000 characters; NULL while open.';
COMMENT ON COLUMN case_complaints.answered_at IS 'When it was answered; NULL while open.';
COMMENT ON COLUMN case_complaints.answered_by IS 'The agent who answered; NULL while open.';

CREATE INDEX case_complaints_by_case ON case_complaints (case_id, created_at);
CREATE INDEX case_complaints_open_by_due ON case_complaints (due_at) WHERE status = 'open';
CREATE INDEX case_complaints_open_by_case ON case_complaints (case_id) WHERE status = 'open';
