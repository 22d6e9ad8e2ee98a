-- Time in a stage without a look-up per exit (issue 12): each transition now writes
-- when the case entered the state it leaves, from the case row it updates. The ETA's
-- stage statistics, the dashboard and the reports read the time in the stage from the
-- event alone; before, each exit looked up its entering event by (case_id, version),
-- about 57,000 look-ups per ETA refresh for a carrier's week of exits.
-- Nullable: events written before this migration (and the opening events) have none;
-- for those the readers fall back to case_event_entered_at.
ALTER TABLE case_events ADD COLUMN from_state_since timestamptz;
COMMENT ON COLUMN case_events.from_state_since IS 'When the case entered from_state (its state_entered_at before this transition); NULL for opening events and for events written before 2026-12-07.';

-- The fallback for events without from_state_since: the `at` of the event that entered
-- the state, by the (case_id, version) key, searched only in the months between the
-- case's opening and the exit (no event is older than its case), so partitions are
-- pruned per look-up.
CREATE FUNCTION case_event_entered_at(p_case_id uuid, p_version integer, p_at timestamptz)
RETURNS timestamptz
LANGUAGE sql STABLE PARALLEL SAFE
AS $$
    SELECT p.at FROM case_events p
    WHERE p.case_id = p_case_id AND p.version = p_version - 1
      AND p.at <= p_at
      AND p.at >= (SELECT c.created_at FROM reactivation_cases c WHERE c.id = p_case_id)
    LIMIT 1
$$;
COMMENT ON FUNCTION case_event_entered_at(uuid, integer, timestamptz) IS 'When the case of an event entered the state the event left, from the log: the fallback for events without from_state_since.';
