-- Retention of personal data with crypto-shredding (issue 15 items 1, 2 and 6).
-- Each case's personal data is sealed under its own data key, stored here only
-- wrapped by the master secrets; retention deletes the wrapped key (and the case's
-- evidence, explanations and codes) and records what it deleted and when, so the
-- dossier can say "deleted on <date>". The event log and the audit log are never
-- touched.

CREATE TABLE case_data_keys (
    case_id     uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE case_data_keys IS 'One data key per case (envelope encryption): the case''s name and ID number are sealed under it. Deleting the row (retention) makes them unreadable everywhere, backups included (crypto-shredding).';
COMMENT ON COLUMN case_data_keys.case_id IS 'The case.';
COMMENT ON COLUMN case_data_keys.wrapped_key IS 'The 256-bit data key, sealed under a master secret (0x01 || key id || nonce || ciphertext, the case id as associated data); re-wrapped by `reactivation keys rotate`.';
COMMENT ON COLUMN case_data_keys.created_at IS 'When the key was made (at opening, or by the backfill for older cases).';

CREATE TABLE case_personal_data_deletions (
    case_id                 uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    ended_at                timestamptz NOT NULL,
    codes_deleted_at        timestamptz,
    explanations_deleted_at timestamptz,
    evidence_deleted_at     timestamptz,
    identity_deleted_at     timestamptz,
    codes_deleted           integer     NOT NULL DEFAULT 0 CHECK (codes_deleted >= 0),
    explanations_deleted    integer     NOT NULL DEFAULT 0 CHECK (explanations_deleted >= 0),
    evidence_deleted        integer     NOT NULL DEFAULT 0 CHECK (evidence_deleted >= 0)
);
COMMENT ON TABLE case_personal_data_deletions IS 'What retention deleted of a finished case, and when: the regulator''s dossier shows each kind as "deleted on <date>". Written by the retention pass only.';
COMMENT ON COLUMN case_personal_data_deletions.case_id IS 'The case.';
COMMENT ON COLUMN case_personal_data_deletions.ended_at IS 'When the case ended (entered its terminal state): retention periods count from here.';
COMMENT ON COLUMN case_personal_data_deletions.codes_deleted_at IS 'When the case''s one-time code rows were deleted; NULL until then.';
COMMENT ON COLUMN case_personal_data_deletions.explanations_deleted_at IS 'When the case''s explanations (statements and the third parties'' numbers) were deleted, and the appeal statement blanked; NULL until then.';
COMMENT ON COLUMN case_personal_data_deletions.evidence_deleted_at IS 'When the case''s evidence files were deleted; NULL until then.';
COMMENT ON COLUMN case_personal_data_deletions.identity_deleted_at IS 'When the case''s data key was destroyed (name and ID number unreadable) and the masked name and ID tail blanked; NULL until then.';
COMMENT ON COLUMN case_personal_data_deletions.codes_deleted IS 'How many code rows were deleted.';
COMMENT ON COLUMN case_personal_data_deletions.explanations_deleted IS 'How many explanations were deleted.';
COMMENT ON COLUMN case_personal_data_deletions.evidence_deleted IS 'How many evidence files were deleted.';

CREATE TABLE retention_cursors (
    kind     text        PRIMARY KEY CHECK (kind IN ('codes', 'explanations', 'evidence', 'identity')),
    ended_at timestamptz NOT NULL CHECK (isfinite(ended_at)),
    case_id  uuid        NOT NULL
);
COMMENT ON TABLE retention_cursors IS 'How far the retention pass has walked the finished cases, per kind of data, in (end time, case id) order: every case at or before the cursor has had that kind deleted. A batch locks its kind''s row (SKIP LOCKED: a second runner leaves the kind to the first) and moves it in the batch''s transaction.';
COMMENT ON COLUMN retention_cursors.kind IS 'The kind of data: codes, explanations, evidence or identity.';
COMMENT ON COLUMN retention_cursors.ended_at IS 'End time of the last case done (1970-01-01 before the first: no case ends before it).';
COMMENT ON COLUMN retention_cursors.case_id IS 'Id of the last case done (ties on the end time).';
INSERT INTO retention_cursors (kind, ended_at, case_id) VALUES
    ('codes', '1970-01-01T00:00:00Z', '00000000-0000-0000-0000-000000000000'),
    ('explanations', '1970-01-01T00:00:00Z', '00000000-0000-0000-0000-000000000000'),
    ('evidence', '1970-01-01T00:00:00Z', '00000000-0000-0000-0000-000000000000'),
    ('identity', '1970-01-01T00:00:00Z', '00000000-0000-0000-0000-000000000000');

-- The retention scan: finished cases in order of their end time (a terminal state
-- is never left, so state_entered_at is the end time).
CREATE INDEX reactivation_cases_finished_by_end
    ON reactivation_cases (state_entered_at, id)
    WHERE state IN ('reactivated', 'cancelled', 'expired', 'closed');

-- After retention the masked identity is blanked too: '****' stands for a deleted ID tail.
ALTER TABLE case_identities DROP CONSTRAINT case_identities_id_number_last4_check;
ALTER TABLE case_identities ADD CONSTRAINT case_identities_id_number_last4_check
    CHECK (id_number_last4 ~ '^[0-9]{3}[0-9X]$' OR id_number_last4 = '****');
COMMENT ON COLUMN case_identities.id_number_last4 IS 'Last four characters of the ID number, the most ever shown unmasked; ''****'' once retention deleted the identity.';
COMMENT ON COLUMN case_identities.full_name_enc IS 'Encrypted full name: under the case''s data key (0x02 || nonce || ciphertext) when case_data_keys has its row, else under a master secret (written before data keys existed); unreadable once retention destroyed the data key.';
COMMENT ON COLUMN case_identities.id_number_enc IS 'Encrypted 18-character resident ID number, sealed like full_name_enc.';
