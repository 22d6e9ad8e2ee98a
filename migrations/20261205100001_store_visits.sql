-- Issue 14 item 2: the store-visit remedy. One row per in-person check a store agent
-- recorded. Minimal: which documents were seen (codes), that the face was compared,
-- and the ID number typed from the card only masked (it was compared with the case's
-- encrypted one, never stored in clear).

CREATE TABLE store_visits (
    id                uuid        PRIMARY KEY,
    case_id           uuid        NOT NULL REFERENCES reactivation_cases (id),
    agent_id          uuid        NOT NULL REFERENCES agents (id),
    acted_as          actor_role  NOT NULL CHECK (acted_as IN ('store', 'supervisor')),
    documents_seen    text[]      NOT NULL CHECK (cardinality(documents_seen) BETWEEN 1 AND 5),
    face_compared     boolean     NOT NULL CHECK (face_compared),
    id_number_masked  text        NOT NULL,
    at                timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX store_visits_case ON store_visits (case_id, at);
COMMENT ON TABLE store_visits IS 'In-person identity checks at a store (proof in_person_id): one row per check a store agent (or supervisor) recorded; the case moved by store_visit_verified in the same transaction.';
COMMENT ON COLUMN store_visits.id IS 'Check id (UUIDv7).';
COMMENT ON COLUMN store_visits.case_id IS 'The case whose identity was checked in person.';
COMMENT ON COLUMN store_visits.agent_id IS 'The store agent (or supervisor) who saw the documents.';
COMMENT ON COLUMN store_visits.acted_as IS 'The role the agent acted in: store or supervisor.';
COMMENT ON COLUMN store_visits.at IS 'When the check was recorded.';
COMMENT ON COLUMN store_visits.documents_seen IS 'Codes of the original documents seen (resident_id_card, temporary_id_card, household_register, police_release_letter, other_official_document).';
COMMENT ON COLUMN store_visits.face_compared IS 'The agent compared the face with the ID card photo (required).';
COMMENT ON COLUMN store_visits.id_number_masked IS 'The ID number seen on the card, masked (it matched the case''s).';
