-- Agent-assisted openings (issue 14 item 1): an agent opens a case on behalf of a
-- subscriber on the hotline; the case token goes to the subscriber's contact on file
-- by SMS, never to the agent. One row per case an agent opened.
CREATE TABLE assisted_openings (
    case_id        uuid        PRIMARY KEY REFERENCES reactivation_cases (id),
    agent_id       uuid        NOT NULL REFERENCES agents (id),
    actor_role     actor_role  NOT NULL,
    channel        text        NOT NULL CHECK (channel IN ('hotline', 'store')),
    identity_check text        NOT NULL CHECK (identity_check IN ('hotline_call', 'in_person_id')),
    token_message  uuid        NOT NULL,
    created_at     timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE assisted_openings IS 'Cases an agent opened on behalf of a subscriber (POST /v1/agent/cases): who, in which role and channel, and how the agent checked identity. The case itself is an ordinary case (same row, same proofs).';
COMMENT ON COLUMN assisted_openings.case_id IS 'The case opened.';
COMMENT ON COLUMN assisted_openings.agent_id IS 'The agent who opened it.';
COMMENT ON COLUMN assisted_openings.actor_role IS 'The role the agent acted in (cs or supervisor on the hotline).';
COMMENT ON COLUMN assisted_openings.channel IS 'Where the subscriber asked: hotline (or store).';
COMMENT ON COLUMN assisted_openings.identity_check IS 'How the agent checked identity: hotline_call (the caller spoke with the agent; not enough alone, the case still needs a code or the service password) or in_person_id (original ID seen in person at a store).';
COMMENT ON COLUMN assisted_openings.token_message IS 'The outbox message (outbox.id) that carries the case token, sealed, to the subscriber''s contact on file.';
COMMENT ON COLUMN assisted_openings.created_at IS 'When the agent opened the case.';
CREATE INDEX assisted_openings_by_agent ON assisted_openings (agent_id, created_at);

-- A number lookup lists the number's open and recent cases, newest first, whatever
-- their state: one index range per number instead of a scan of every case.
CREATE INDEX reactivation_cases_by_msisdn ON reactivation_cases (msisdn, created_at DESC);
