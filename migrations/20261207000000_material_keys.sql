-- Crypto-shredding of the subscriber's material (issue 15, "Data lifecycle" item 2).
-- Evidence files, explanations (statement and counterparties) and the appeal
-- statement are sealed under data keys of the case, one per kind of material
-- (evidence; explanations, which include the appeal statement), because each kind
-- has its own retention period. The data keys are stored only wrapped by the master
-- secrets; retention deletes a kind's rows and its wrapped key. Rows written before
-- this migration stay in clear (sealed = false / the clear columns filled) and are
-- still read, until `reactivation keys envelope --material` seals them; they are
-- deleted by retention like any other.

CREATE TABLE case_material_keys (
    case_id     uuid        NOT NULL REFERENCES reactivation_cases (id),
    kind        text        NOT NULL CHECK (kind IN ('evidence', 'explanations')),
    wrap_id     uuid        NOT NULL UNIQUE,
    wrapped_key bytea       NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (case_id, kind)
);
COMMENT ON TABLE case_material_keys IS 'One data key per case and kind of material (envelope encryption): the case''s evidence files are sealed under its evidence key, its explanations and appeal statement under its explanations key. Made in the transaction that stores the first material of the kind. Retention deletes the row with the kind''s material: what was sealed under it cannot be opened again from this database or from a copy of the sealed rows without this row.';
COMMENT ON COLUMN case_material_keys.case_id IS 'The case.';
COMMENT ON COLUMN case_material_keys.kind IS 'Which material the key seals: evidence (case_evidence.content) or explanations (case_explanations.body_sealed and case_appeals.statement_sealed).';
COMMENT ON COLUMN case_material_keys.wrap_id IS 'The id the wrapped key is bound to (its associated data): a UUID derived from the case id and the kind (SHA-256, version 8), so a wrapped key cannot be swapped in as another kind''s key or as the identity data key. Also the row''s key for `reactivation keys rotate`.';
COMMENT ON COLUMN case_material_keys.wrapped_key IS 'The 256-bit data key, sealed under a master secret (0x01 || key id || nonce || ciphertext, wrap_id as associated data); re-wrapped by `reactivation keys rotate`.';
COMMENT ON COLUMN case_material_keys.created_at IS 'When the key was made (with the first material of its kind).';

-- Evidence: the content is either the file in clear (rows written before sealing)
-- or the file sealed under the evidence key, 29 bytes longer.
ALTER TABLE case_evidence ADD COLUMN sealed boolean NOT NULL DEFAULT false;
ALTER TABLE case_evidence DROP CONSTRAINT case_evidence_check;
ALTER TABLE case_evidence ADD CONSTRAINT case_evidence_content_size_check
    CHECK (octet_length(content) = size_bytes + CASE WHEN sealed THEN 29 ELSE 0 END);
COMMENT ON COLUMN case_evidence.sealed IS 'Whether content is sealed under the case''s evidence key (true for every file stored since sealing existed); false: a file stored before, in clear, deleted by retention like the others.';
COMMENT ON COLUMN case_evidence.content IS 'The file (personal data: shown only to agents): sealed under the case''s evidence data key (0x02 || nonce (12) || AES-GCM ciphertext || tag (16), the evidence id as associated data) when sealed, else in clear.';
COMMENT ON COLUMN case_evidence.size_bytes IS 'Size of the file in bytes (1 to 5 MiB), before sealing.';
COMMENT ON COLUMN case_evidence.sha256 IS 'SHA-256 of the file (in clear): the same file uploaded twice to a case is stored once. A hash of a document, not the document; deleted with the row by retention.';

-- Explanations: either the clear statement and counterparties (rows written before
-- sealing) or one sealed JSON document {statement, counterparties}.
ALTER TABLE case_explanations ADD COLUMN body_sealed bytea
    CHECK (octet_length(body_sealed) BETWEEN 30 AND 131072);
ALTER TABLE case_explanations ALTER COLUMN statement DROP NOT NULL;
ALTER TABLE case_explanations ALTER COLUMN counterparties DROP NOT NULL;
ALTER TABLE case_explanations ADD CONSTRAINT case_explanations_clear_or_sealed_check
    CHECK (CASE WHEN body_sealed IS NULL THEN statement IS NOT NULL AND counterparties IS NOT NULL
                ELSE statement IS NULL AND counterparties IS NULL END);
COMMENT ON COLUMN case_explanations.body_sealed IS 'The statement and the counterparties as one JSON document {statement, counterparties}, sealed under the case''s explanations data key (0x02 || nonce || ciphertext || tag, the explanation id as associated data). NULL for an explanation stored before sealing existed (statement and counterparties in clear).';
COMMENT ON COLUMN case_explanations.statement IS 'The subscriber''s statement, 1 to 4000 characters, in clear: only explanations stored before sealing existed; NULL when body_sealed holds it.';
COMMENT ON COLUMN case_explanations.counterparties IS 'In clear only for explanations stored before sealing existed (NULL when body_sealed holds them): JSON array (at most 20) of {msisdn, relation, purpose}, the explained counterparty in E.164 (third-party personal data: masked in every answer, never logged), who it is to the subscriber, why they were in touch.';

-- The appeal statement: in clear (before sealing, or '[deleted]' after retention) or
-- sealed under the explanations key.
ALTER TABLE case_appeals ADD COLUMN statement_sealed bytea
    CHECK (octet_length(statement_sealed) BETWEEN 30 AND 32768);
ALTER TABLE case_appeals ALTER COLUMN statement DROP NOT NULL;
ALTER TABLE case_appeals ADD CONSTRAINT case_appeals_clear_or_sealed_check
    CHECK ((statement IS NULL) <> (statement_sealed IS NULL));
COMMENT ON COLUMN case_appeals.statement_sealed IS 'Why the subscriber disagrees, sealed under the case''s explanations data key (0x02 || nonce || ciphertext || tag; the associated data is a UUID derived from the case id and "appeal"). NULL for an appeal made before sealing existed, and after retention.';
COMMENT ON COLUMN case_appeals.statement IS 'Why the subscriber disagrees, 1 to 4000 characters, in clear: only appeals made before sealing existed; ''[deleted]'' once retention deleted the explanations; NULL when statement_sealed holds it.';

COMMENT ON COLUMN case_personal_data_deletions.explanations_deleted_at IS 'When the case''s explanations (statements and the third parties'' numbers) were deleted with the explanations data key, and the appeal statement blanked; NULL until then.';
COMMENT ON COLUMN case_personal_data_deletions.evidence_deleted_at IS 'When the case''s evidence files were deleted with the evidence data key; NULL until then.';

-- What `reactivation keys envelope --material` walks: the rows still in clear (every
-- row at this migration, none written after it; the indexes empty out as it runs).
CREATE INDEX case_evidence_clear_by_case ON case_evidence (case_id) WHERE NOT sealed;
CREATE INDEX case_explanations_clear_by_case ON case_explanations (case_id) WHERE body_sealed IS NULL;
