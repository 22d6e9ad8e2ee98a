-- Lost case token (issue 10 item 7): a subscriber who lost the token of the number's
-- case past identity verification gets a new one by proving control of a contact on
-- file (a one-time code). One row per recovery request, whatever the number (known or
-- not, with or without a case or contact), so every answer has the same shape.
CREATE TABLE token_recoveries (
    id          uuid        PRIMARY KEY,
    msisdn      text        NOT NULL CHECK (msisdn ~ '^\+861[3-9][0-9]{9}$'),
    case_id     uuid        REFERENCES reactivation_cases (id),
    code_hash   bytea       CHECK (octet_length(code_hash) = 32),
    expires_at  timestamptz NOT NULL,
    checks      integer     NOT NULL DEFAULT 0 CHECK (checks >= 0),
    consumed_at timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CHECK (code_hash IS NULL OR case_id IS NOT NULL)
);
COMMENT ON TABLE token_recoveries IS 'One row per request for a new case token (POST /v1/cases/recovery), whatever the number: a code is sent only when the number has an open case past identity verification and a contact on file. Codes and tries are also counted in number_budget_uses.';
COMMENT ON COLUMN token_recoveries.id IS 'Recovery id (UUIDv7), given to the requester.';
COMMENT ON COLUMN token_recoveries.msisdn IS 'The number asked about (E.164), whose budgets pay for codes and tries. Personal data: never logged.';
COMMENT ON COLUMN token_recoveries.case_id IS 'The number''s open case past identity verification at request time; NULL when it had none.';
COMMENT ON COLUMN token_recoveries.code_hash IS 'Keyed hash (HMAC-SHA-256, keyed by the recovery id) of the code sent; NULL when no code was sent (no such case, no contact on file, unknown number, carrier unreachable).';
COMMENT ON COLUMN token_recoveries.expires_at IS 'When the code stops being accepted (10 minutes after the request).';
COMMENT ON COLUMN token_recoveries.checks IS 'Codes compared against this recovery (at most 5), counted before comparing.';
COMMENT ON COLUMN token_recoveries.consumed_at IS 'When the right code was used and a new token issued (single use); NULL before.';
COMMENT ON COLUMN token_recoveries.created_at IS 'When the recovery was requested.';
CREATE INDEX token_recoveries_by_case ON token_recoveries (case_id) WHERE case_id IS NOT NULL;
