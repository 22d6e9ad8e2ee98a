-- The subscriber's side of a risk-graded review: explanations of flagged traffic,
-- evidence files, and the one appeal a rejected subscriber may make.

CREATE TABLE case_explanations (
    id             uuid        PRIMARY KEY,
    case_id        uuid        NOT NULL REFERENCES reactivation_cases (id),
    statement      text        NOT NULL CHECK (char_length(statement) BETWEEN 1 AND 4000),
    counterparties jsonb       NOT NULL DEFAULT '[]'
                               CHECK (jsonb_typeof(counterparties) = 'array' AND jsonb_array_length(counterparties) <= 20),
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE case_explanations IS 'What the subscriber says about the flagged traffic of their number: a statement and, for each counterparty they explain, who it is and why they were in touch. Shown to security analysts; never changed once written.';
COMMENT ON COLUMN case_explanations.id IS 'Explanation id (UUIDv7: sorts by time).';
COMMENT ON COLUMN case_explanations.case_id IS 'The case.';
COMMENT ON COLUMN case_explanations.statement IS 'The subscriber''s statement, 1 to 4000 characters.';
COMMENT ON COLUMN case_explanations.counterparties IS 'JSON array (at most 20) of {msisdn, relation, purpose}: the explained counterparty in E.164 (third-party personal data: masked in every answer, never logged), who it is to the subscriber, why they were in touch.';
COMMENT ON COLUMN case_explanations.created_at IS 'When it was submitted.';
CREATE INDEX case_explanations_by_case ON case_explanations (case_id, created_at);

CREATE TABLE case_evidence (
    id          uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    media_type  text        NOT NULL CHECK (media_type IN ('image/jpeg', 'image/png', 'application/pdf')),
    size_bytes  integer     NOT NULL CHECK (size_bytes BETWEEN 1 AND 5242880),
    sha256      bytea       NOT NULL CHECK (length(sha256) = 32),
    content     bytea       NOT NULL CHECK (octet_length(content) = size_bytes),
    created_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (case_id, sha256)
);
COMMENT ON TABLE case_evidence IS 'Documents the subscriber uploaded for a review (JPEG, PNG or PDF, recognised by content, at most 5 MiB). One row per distinct file per case.';
COMMENT ON COLUMN case_evidence.id IS 'Evidence id (UUIDv7: sorts by time).';
COMMENT ON COLUMN case_evidence.case_id IS 'The case.';
COMMENT ON COLUMN case_evidence.media_type IS 'The type the content was recognised as: image/jpeg, image/png or application/pdf (never the uploader''s claim or the file name).';
COMMENT ON COLUMN case_evidence.size_bytes IS 'Size of the content in bytes (1 to 5 MiB).';
COMMENT ON COLUMN case_evidence.sha256 IS 'SHA-256 of the content; the same file uploaded twice to a case is stored once.';
COMMENT ON COLUMN case_evidence.content IS 'The file itself (personal data: shown only to agents).';
COMMENT ON COLUMN case_evidence.created_at IS 'When it was uploaded.';

CREATE TABLE case_appeals (
    case_id     uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    statement   text        NOT NULL CHECK (char_length(statement) BETWEEN 1 AND 4000),
    rejected_at timestamptz NOT NULL,
    appealed_at timestamptz NOT NULL DEFAULT now(),
    CHECK (appealed_at >= rejected_at)
);
COMMENT ON TABLE case_appeals IS 'A rejected subscriber''s appeal: at most one per case (the primary key), within 15 days of the rejection; the case goes back to security review.';
COMMENT ON COLUMN case_appeals.case_id IS 'The case appealed (one appeal per case).';
COMMENT ON COLUMN case_appeals.statement IS 'Why the subscriber disagrees, 1 to 4000 characters.';
COMMENT ON COLUMN case_appeals.rejected_at IS 'When the appealed rejection took effect (the case''s state_entered_at in rejected): start of the 15-day window.';
COMMENT ON COLUMN case_appeals.appealed_at IS 'When the appeal was made.';

COMMENT ON COLUMN risk_assessments.signals IS 'The carrier signals the grading used: counts, the suspension reason and flagged_contacts (the flagged counterparties in E.164: third-party personal data, masked in every answer, never logged).';
COMMENT ON COLUMN risk_assessments.needs IS 'What the case still needs (explanation, evidence, security_review, store_visit): the tier''s needs at grading, fewer after each re-score on new material.';
