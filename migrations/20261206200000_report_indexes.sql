-- Supervisors' reports and exports for a date range (issue 15 item 4): every report
-- reads one time window of one table, so each of those tables gets an index on the
-- time the report ranges over (the history tables case_events and audit_log already
-- have theirs). Without them a report of one day would read every case ever opened.

-- Cases opened in the range (the cases report and the streamed case export), in
-- export order.
CREATE INDEX reactivation_cases_by_opening ON reactivation_cases (created_at, id);
-- Cases flagged (above the lowest tier) by an assessment in the range: the
-- false-positive report per reason code.
CREATE INDEX risk_assessments_flagged_by_time ON risk_assessments (assessed_at)
    WHERE tier <> 'low';
-- Complaints made in the range, with their answer times.
CREATE INDEX case_complaints_by_time ON case_complaints (created_at);
-- Expedite requests made in the range.
CREATE INDEX case_expedite_requests_by_time ON case_expedite_requests (requested_at);
