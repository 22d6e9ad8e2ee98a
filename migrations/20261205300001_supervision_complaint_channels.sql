-- Supervisor tools and complaints from any channel (issue 14, items 3 and 4).
--
-- Complaints: agents log complaints received by hotline, in a store, on social media
-- or as a 12300 referral, linked to a case or only to a number (a number with no case
-- yet). Each keeps its answer clock; the timers service escalates an open complaint
-- once it is overdue (escalated_at) and tells the subscriber. Expand only: the old
-- code (case_id always set, no msisdn) keeps working.

ALTER TABLE case_complaints ALTER COLUMN case_id DROP NOT NULL;
ALTER TABLE case_complaints ADD COLUMN msisdn text CHECK (msisdn ~ '^\+861[3-9][0-9]{9}$');
ALTER TABLE case_complaints ADD CONSTRAINT case_complaints_case_or_number
    CHECK (case_id IS NOT NULL OR msisdn IS NOT NULL);
ALTER TABLE case_complaints ADD COLUMN reference text
    CHECK (char_length(reference) BETWEEN 1 AND 100);
ALTER TABLE case_complaints ADD COLUMN logged_by uuid REFERENCES agents (id);
ALTER TABLE case_complaints ADD COLUMN locale text CHECK (locale IN ('zh-CN', 'en'));
ALTER TABLE case_complaints ADD COLUMN escalated_at timestamptz;
ALTER TABLE case_complaints DROP CONSTRAINT case_complaints_channel_check;
ALTER TABLE case_complaints ADD CONSTRAINT case_complaints_channel_check
    CHECK (channel IN ('web', 'app', 'social', 'regulator', 'hotline', 'store'));
-- A configured clock of zero minutes (tests) makes a complaint due when it is made.
ALTER TABLE case_complaints DROP CONSTRAINT case_complaints_check;
ALTER TABLE case_complaints ADD CONSTRAINT case_complaints_due_not_before_made
    CHECK (due_at >= created_at);
ALTER TABLE case_complaints ADD CONSTRAINT case_complaints_escalated_while_open_or_after
    CHECK (escalated_at IS NULL OR escalated_at >= created_at);

UPDATE case_complaints k SET msisdn = c.msisdn
FROM reactivation_cases c WHERE c.id = k.case_id AND k.msisdn IS NULL;

COMMENT ON COLUMN case_complaints.case_id IS 'The case complained about; NULL for a complaint logged against a number that has no case.';
COMMENT ON COLUMN case_complaints.msisdn IS 'The subscriber''s number (E.164, personal data: masked in lists and logs). Set for every complaint written since issue 14; older rows take the case''s.';
COMMENT ON COLUMN case_complaints.reference IS 'The sender''s reference, for a complaint an agent logged: the 12300 work-order number (required for a referral), a social-media post id, a hotline ticket.';
COMMENT ON COLUMN case_complaints.logged_by IS 'The agent who logged the complaint (hotline, store, social, regulator); NULL when the subscriber made it through the API.';
COMMENT ON COLUMN case_complaints.locale IS 'The subscriber''s language for messages about the complaint, when known (zh-CN or en); else the case''s, else zh-CN.';
COMMENT ON COLUMN case_complaints.escalated_at IS 'When the timers service escalated the open complaint because its due time passed (the subscriber was told 12300 is the next avenue); NULL while not overdue.';
COMMENT ON COLUMN case_complaints.channel IS 'Where the complaint was made: web, app, social, regulator (a 12300 referral), hotline or store.';

CREATE INDEX case_complaints_open_unescalated_by_due ON case_complaints (due_at)
    WHERE status = 'open' AND escalated_at IS NULL;
CREATE INDEX case_complaints_by_number ON case_complaints (msisdn, created_at);

-- Manual escalation and who raised an escalation. An SLA escalation leaves both NULL.
ALTER TABLE reactivation_cases ADD COLUMN escalated_by uuid REFERENCES agents (id);
ALTER TABLE reactivation_cases ADD COLUMN escalation_reason text
    CHECK (char_length(escalation_reason) BETWEEN 1 AND 500);
COMMENT ON COLUMN reactivation_cases.escalated_by IS 'The agent who escalated the case by hand; NULL when the escalation came from an SLA breach (or there is none).';
COMMENT ON COLUMN reactivation_cases.escalation_reason IS 'Why the agent escalated the case by hand (5 to 500 characters); NULL for an SLA escalation.';
