-- Identity claims and proofs, risk assessments, agent accounts.

CREATE TABLE case_identities (
    case_id              uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    full_name_enc        bytea       NOT NULL,
    id_number_enc        bytea       NOT NULL,
    full_name_masked     text        NOT NULL,
    id_number_last4      text        NOT NULL CHECK (id_number_last4 ~ '^[0-9]{3}[0-9X]$'),
    subscriber_match     boolean,
    match_checked_at     timestamptz,
    otp_sends            integer     NOT NULL DEFAULT 0 CHECK (otp_sends BETWEEN 0 AND 5),
    failed_attempts      integer     NOT NULL DEFAULT 0 CHECK (failed_attempts BETWEEN 0 AND 5),
    verified_method      text        CHECK (verified_method IN ('otp', 'service_password', 'call_records', 'agent')),
    verified_at          timestamptz
);
COMMENT ON TABLE case_identities IS 'Who the requester says they are, and the proofs they gave. Name and ID number are stored only encrypted (AES-256-GCM, the case id as associated data).';
COMMENT ON COLUMN case_identities.case_id IS 'The case.';
COMMENT ON COLUMN case_identities.full_name_enc IS 'Encrypted full name (nonce || ciphertext).';
COMMENT ON COLUMN case_identities.id_number_enc IS 'Encrypted 18-character resident ID number (nonce || ciphertext).';
COMMENT ON COLUMN case_identities.full_name_masked IS 'Masked name for agents and logs-free displays (first character and stars).';
COMMENT ON COLUMN case_identities.id_number_last4 IS 'Last four characters of the ID number, the most ever shown unmasked.';
COMMENT ON COLUMN case_identities.subscriber_match IS 'The carrier''s answer to "do this name and ID match the number''s subscriber"; NULL until asked. Never shown to the requester.';
COMMENT ON COLUMN case_identities.match_checked_at IS 'When the carrier was asked.';
COMMENT ON COLUMN case_identities.otp_sends IS 'One-time codes sent for this case; at most 5 (atomic conditional UPDATE).';
COMMENT ON COLUMN case_identities.failed_attempts IS 'Failed proofs of any kind for this case; at 5 the case goes to a CS agent.';
COMMENT ON COLUMN case_identities.verified_method IS 'The proof that verified identity, once verified.';
COMMENT ON COLUMN case_identities.verified_at IS 'When identity was verified.';

CREATE TABLE otp_codes (
    id          uuid        PRIMARY KEY,
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    code_hash   bytea       NOT NULL CHECK (length(code_hash) = 32),
    sent_to     text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    checks      integer     NOT NULL DEFAULT 0 CHECK (checks BETWEEN 0 AND 5),
    consumed_at timestamptz
);
COMMENT ON TABLE otp_codes IS 'One-time codes sent to a contact on file with the carrier. Only a keyed hash of the code is stored.';
COMMENT ON COLUMN otp_codes.id IS 'Code id; also the idempotency key of the carrier message.';
COMMENT ON COLUMN otp_codes.case_id IS 'The case the code proves.';
COMMENT ON COLUMN otp_codes.code_hash IS 'HMAC-SHA256 of the case id and the code under the server''s OTP key.';
COMMENT ON COLUMN otp_codes.sent_to IS 'Masked contact the carrier sent it to.';
COMMENT ON COLUMN otp_codes.created_at IS 'When it was issued.';
COMMENT ON COLUMN otp_codes.expires_at IS 'Ten minutes after issue; invalid afterwards.';
COMMENT ON COLUMN otp_codes.checks IS 'Checks made against this code; at most 5 (atomic conditional UPDATE before any comparison).';
COMMENT ON COLUMN otp_codes.consumed_at IS 'When it was accepted; a code is accepted once.';
CREATE INDEX otp_codes_by_case ON otp_codes (case_id, created_at DESC);

CREATE TYPE risk_tier AS ENUM ('low', 'medium', 'high', 'extreme');
COMMENT ON TYPE risk_tier IS 'Graded risk of a number; mirrors case_domain::RiskTier.';

CREATE TABLE risk_assessments (
    id           uuid        PRIMARY KEY,
    case_id      uuid        NOT NULL REFERENCES reactivation_cases (id),
    tier         risk_tier   NOT NULL,
    reason_codes text[]      NOT NULL,
    needs        text[]      NOT NULL,
    signals      jsonb       NOT NULL,
    assessed_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE risk_assessments IS 'Every risk grading of a case (re-scored when new material arrives); the latest row is current.';
COMMENT ON COLUMN risk_assessments.id IS 'Assessment id (UUIDv7: sorts by time).';
COMMENT ON COLUMN risk_assessments.case_id IS 'The case.';
COMMENT ON COLUMN risk_assessments.tier IS 'low, medium, high or extreme.';
COMMENT ON COLUMN risk_assessments.reason_codes IS 'Customer-safe reason codes of the rules that fired.';
COMMENT ON COLUMN risk_assessments.needs IS 'What the tier requires from the subscriber (explanation, evidence, store_visit).';
COMMENT ON COLUMN risk_assessments.signals IS 'The carrier signals the grading used (counts only, no numbers).';
COMMENT ON COLUMN risk_assessments.assessed_at IS 'When it was graded.';
CREATE INDEX risk_assessments_by_case ON risk_assessments (case_id, assessed_at DESC);

CREATE TABLE provisioning_orders (
    id           uuid        PRIMARY KEY,
    case_id      uuid        NOT NULL REFERENCES reactivation_cases (id),
    restoration  text        NOT NULL CHECK (restoration IN ('full', 'inbound_only')),
    state        text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'acknowledged', 'inProgress', 'completed', 'failed')),
    carrier_ref  text,
    failures     integer     NOT NULL DEFAULT 0 CHECK (failures >= 0),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE provisioning_orders IS 'TMF641-style service orders that resume a subscription; the id is the outbox message id and the carrier''s idempotency key.';
COMMENT ON COLUMN provisioning_orders.id IS 'Order id = outbox id = Idempotency-Key sent to the carrier.';
COMMENT ON COLUMN provisioning_orders.case_id IS 'The case.';
COMMENT ON COLUMN provisioning_orders.restoration IS 'full, or inbound_only for a partial (半恢复) restoration.';
COMMENT ON COLUMN provisioning_orders.state IS 'Last known order state: pending (not yet acknowledged), then the carrier''s TMF641 states.';
COMMENT ON COLUMN provisioning_orders.carrier_ref IS 'The carrier''s own order id.';
COMMENT ON COLUMN provisioning_orders.failures IS 'Failed delivery attempts (carrier unreachable or refusing); at the limit the case goes to provisioning_failed.';
COMMENT ON COLUMN provisioning_orders.created_at IS 'When the order was written (with the transition into provisioning).';
COMMENT ON COLUMN provisioning_orders.updated_at IS 'When its state last changed.';
CREATE INDEX provisioning_orders_by_case ON provisioning_orders (case_id);

CREATE TABLE agents (
    id            uuid         PRIMARY KEY,
    username      text         NOT NULL UNIQUE CHECK (username ~ '^[a-z0-9][a-z0-9._-]{1,62}$'),
    password_hash text         NOT NULL,
    roles         actor_role[] NOT NULL CHECK (cardinality(roles) >= 1 AND NOT ('customer' = ANY (roles)) AND NOT ('system' = ANY (roles))),
    created_at    timestamptz  NOT NULL DEFAULT now(),
    disabled_at   timestamptz
);
COMMENT ON TABLE agents IS 'Agent accounts of the console and agent API (CS, security, technical, supervisors, admins).';
COMMENT ON COLUMN agents.id IS 'Agent id; appears as actor_id in case events.';
COMMENT ON COLUMN agents.username IS 'Login name (lower case).';
COMMENT ON COLUMN agents.password_hash IS 'Argon2id PHC string (m=19 MiB, t=2, p=1).';
COMMENT ON COLUMN agents.roles IS 'Agent roles: cs, security, technical, supervisor, admin.';
COMMENT ON COLUMN agents.created_at IS 'When the account was created.';
COMMENT ON COLUMN agents.disabled_at IS 'When the account was disabled; NULL while active.';
