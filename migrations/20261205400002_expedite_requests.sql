-- Expedited handling: a subscriber may ask once per case, with a reason; the case
-- then rises in its department queue (after cases with an unanswered complaint).
CREATE TABLE case_expedite_requests (
    case_id      uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    reason       text        NOT NULL CHECK (char_length(reason) BETWEEN 1 AND 500),
    state        case_state  NOT NULL,
    requested_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE case_expedite_requests IS 'A subscriber''s request for expedited handling of a case; at most one per case (the primary key makes a racing second request lose).';
COMMENT ON COLUMN case_expedite_requests.case_id IS 'The case.';
COMMENT ON COLUMN case_expedite_requests.reason IS 'Why, in the subscriber''s words (shown to agents).';
COMMENT ON COLUMN case_expedite_requests.state IS 'The state the case was in when asked.';
COMMENT ON COLUMN case_expedite_requests.requested_at IS 'When it was asked.';
