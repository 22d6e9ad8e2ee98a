-- Risk rules that learn from their mistakes (issue 15, item 5): the thresholds of the
-- risk rules are versioned configuration. Every version says who made it, when and
-- why; exactly one is current (the risk service grades with it); every assessment
-- records the version it was graded under, so the false-positive report is per rule
-- and version and a supervisor can replay recent history under a proposal.

CREATE TABLE risk_rule_versions (
    version      int         PRIMARY KEY CHECK (version >= 1),
    thresholds   jsonb       NOT NULL CHECK (jsonb_typeof(thresholds) = 'object'),
    reason       text        NOT NULL CHECK (btrim(reason) <> ''),
    created_by   uuid        REFERENCES agents (id),
    created_at   timestamptz NOT NULL DEFAULT now(),
    activated    boolean     NOT NULL DEFAULT false
);
COMMENT ON TABLE risk_rule_versions IS 'Versions of the risk rules'' thresholds; exactly one is activated (current). A new version is made and activated in one transaction that deactivates the one it was based on.';
COMMENT ON COLUMN risk_rule_versions.version IS 'Version number: 1, 2, 3, … (the next one is the current one plus 1).';
COMMENT ON COLUMN risk_rule_versions.thresholds IS 'case_domain::risk_rules::RiskThresholds as JSON: medium and high per graded rule (fraud_linked_contacts, bulk_sms, international_calls) and highs_for_extreme.';
COMMENT ON COLUMN risk_rule_versions.reason IS 'Why the supervisor changed the thresholds (not empty).';
COMMENT ON COLUMN risk_rule_versions.created_by IS 'The supervisor who made the version; NULL for version 1, seeded by this migration with the rules as they were.';
COMMENT ON COLUMN risk_rule_versions.created_at IS 'When the version was made (and activated).';
COMMENT ON COLUMN risk_rule_versions.activated IS 'Whether this is the current version (at most one row: unique index risk_rule_versions_current).';
CREATE UNIQUE INDEX risk_rule_versions_current ON risk_rule_versions ((true)) WHERE activated;

INSERT INTO risk_rule_versions (version, thresholds, reason, created_by, activated)
VALUES (1,
        '{"fraud_linked_contacts": {"medium": 1, "high": 3},
          "bulk_sms": {"medium": 100, "high": 500},
          "international_calls": {"medium": 10, "high": 50},
          "highs_for_extreme": 3}',
        'The rules as they were before their thresholds became configuration.',
        NULL, true);

-- Every assessment so far was graded by the hard-coded rules, which are version 1.
-- The default keeps the code still running during a deploy honest too: it grades
-- with the hard-coded rules, i.e. version 1.
ALTER TABLE risk_assessments
    ADD COLUMN rule_version int NOT NULL DEFAULT 1 REFERENCES risk_rule_versions (version);
COMMENT ON COLUMN risk_assessments.rule_version IS 'The version of the risk rules the assessment was graded under (risk_rule_versions.version).';

-- The replay of the last N days reads only those days' assessments.
CREATE INDEX risk_assessments_by_time ON risk_assessments (assessed_at);
