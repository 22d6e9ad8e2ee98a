-- Supervisors query and export the audit log by case, by actor and by time
-- (GET /v1/agent/audit); these indexes keep those reads off a full scan.
CREATE INDEX audit_log_by_case ON audit_log (case_id, seq) WHERE case_id IS NOT NULL;
CREATE INDEX audit_log_by_actor ON audit_log (actor_id, seq);
CREATE INDEX audit_log_by_time ON audit_log (at);
