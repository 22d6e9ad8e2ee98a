-- Hot paths stay flat as history grows (issue 12).
-- The false-positive report (supervisor dashboard) reads only flagged assessments:
-- through this index it follows the flagged cases, not every assessment ever made.
CREATE INDEX risk_assessments_flagged ON risk_assessments (case_id) WHERE tier <> 'low';
