-- The risk-graded verification ladder (issue 14 item 6): the tier the carrier's
-- signals graded when the case opened decides which identity proofs are asked;
-- the proofs given so far accumulate here.

ALTER TABLE case_identities
    ADD COLUMN proof_tier     risk_tier,
    ADD COLUMN tier_graded_at timestamptz,
    ADD COLUMN proofs_given   text[] NOT NULL DEFAULT '{}'
        CHECK (proofs_given <@ ARRAY['otp', 'service_password', 'cs_callback', 'in_person_id']::text[]);

COMMENT ON COLUMN case_identities.proof_tier IS 'The tier that decides which identity proofs the case asks for (case_domain::ladder), graded from the carrier''s signals once, when the case opened (or at its first proof if that came first); only ever raised. NULL until graded.';
COMMENT ON COLUMN case_identities.tier_graded_at IS 'When proof_tier was first set.';
COMMENT ON COLUMN case_identities.proofs_given IS 'The ladder''s proofs given so far (otp, service_password, cs_callback, in_person_id), each once, in the order given.';
