-- The identity path against attackers (issue 10): budgets per phone number, not per
-- case; cases that have not proven identity no longer block the number.

-- Every budgeted use of a number: a proof judged, a code sent, a message caused by an
-- anonymous action. Rolling 24-hour windows are counted per (msisdn, kind) over the
-- index below, so the cost follows the one number asked about, not the history.
CREATE TABLE number_budget_uses (
    id       uuid        PRIMARY KEY,
    msisdn   text        NOT NULL CHECK (msisdn ~ '^\+861[3-9][0-9]{9}$'),
    kind     text        NOT NULL CHECK (kind IN ('proof', 'code', 'notice')),
    case_id  uuid        REFERENCES reactivation_cases (id),
    method   text        CHECK (method IN ('otp', 'service_password', 'call_records')),
    outcome  text        NOT NULL CHECK (outcome IN ('pending', 'failed', 'accepted', 'released', 'used')),
    ref      text        UNIQUE CHECK (length(ref) <= 200),
    at       timestamptz NOT NULL DEFAULT now(),
    settled_at timestamptz
);
COMMENT ON TABLE number_budget_uses IS 'One row per budgeted use of a phone number (a proof judged, a code sent, a message caused by an anonymous action). Rolling 24-hour budgets are counted over these rows; a slot is reserved under a per-number advisory lock before the carrier is asked.';
COMMENT ON COLUMN number_budget_uses.id IS 'Use id (UUIDv7).';
COMMENT ON COLUMN number_budget_uses.msisdn IS 'The number whose budget the use counts against (E.164). Personal data: never logged.';
COMMENT ON COLUMN number_budget_uses.kind IS 'proof: a proof of identity judged (codes, service passwords, call records); code: a one-time code sent; notice: a message caused before identity was proven.';
COMMENT ON COLUMN number_budget_uses.case_id IS 'The case on whose behalf (NULL when none).';
COMMENT ON COLUMN number_budget_uses.method IS 'For proofs: the method offered.';
COMMENT ON COLUMN number_budget_uses.outcome IS 'pending: reserved, being judged (counts); failed: a failed proof (counts); accepted: a proof accepted (does not count); released: never judged, e.g. the carrier was unreachable (does not count); used: a code or message (counts).';
COMMENT ON COLUMN number_budget_uses.ref IS 'What caused the use, when it must count once (a message''s dedupe key).';
COMMENT ON COLUMN number_budget_uses.at IS 'When the slot was reserved: the start of its 24 hours.';
COMMENT ON COLUMN number_budget_uses.settled_at IS 'When a reserved proof was judged or released.';
CREATE INDEX number_budget_uses_window ON number_budget_uses (msisdn, kind, at);
CREATE INDEX number_budget_uses_by_case ON number_budget_uses (case_id) WHERE case_id IS NOT NULL;

-- When the case proved identity (proofs accepted, or verified by a CS agent).
ALTER TABLE reactivation_cases ADD COLUMN identity_proven_at timestamptz;
COMMENT ON COLUMN reactivation_cases.identity_proven_at IS 'When the requester proved identity (proofs_accepted or identity_verified); NULL before. Only proven open cases are unique per number.';
UPDATE reactivation_cases c
   SET identity_proven_at = p.at
  FROM (SELECT case_id, min(at) AS at FROM case_events
         WHERE event IN ('proofs_accepted', 'identity_verified') GROUP BY case_id) p
 WHERE p.case_id = c.id;

-- Several cases without proven identity may be open for one number at once (a
-- stranger's request must not block the subscriber); past identity, at most one.
DROP INDEX reactivation_cases_one_open_per_msisdn;
CREATE UNIQUE INDEX reactivation_cases_one_proven_open_per_msisdn
    ON reactivation_cases (msisdn)
    WHERE identity_proven_at IS NOT NULL AND state NOT IN ('reactivated', 'cancelled', 'expired', 'closed');
-- The open cases of one number (to supersede the unproven ones, to find the case
-- for a lost token): follows open work only.
CREATE INDEX reactivation_cases_open_by_msisdn
    ON reactivation_cases (msisdn)
    WHERE state NOT IN ('reactivated', 'cancelled', 'expired', 'closed');

-- The first case to prove identity closes the others as superseded.
ALTER TYPE case_event ADD VALUE 'superseded' BEFORE 'cancelled';

COMMENT ON COLUMN case_identities.failed_attempts IS 'Failed proofs offered on this case (capped at 5), for the CS agent''s view. The limit itself is per number: number_budget_uses.';
