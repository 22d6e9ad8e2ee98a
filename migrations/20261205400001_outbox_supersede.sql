-- Fewer, shorter messages: a subscriber message about a case's state is held for a
-- short window (REACTIVATION_MESSAGE_WINDOW_SECONDS) and superseded by a later one
-- with the same key before it was ever handed to a deliverer. The superseded row is
-- finished (delivered_at set, so no claim or pending index sees it) and names the
-- row that replaced it.
ALTER TABLE outbox ADD COLUMN supersede_key text;
ALTER TABLE outbox ADD COLUMN supersede_until timestamptz;
ALTER TABLE outbox ADD COLUMN superseded_by uuid;
COMMENT ON COLUMN outbox.supersede_key IS 'Messages with the same key (e.g. case:<id>:status) replace one another while still held and never attempted; NULL: never replaced.';
COMMENT ON COLUMN outbox.supersede_until IS 'End of the window: a later message of the same key whose cause happened before this time replaces this one (when caused plus the window).';
COMMENT ON COLUMN outbox.superseded_by IS 'The later message that replaced this one before it was sent (delivered_at is then the time it was dropped, nothing was sent); NULL otherwise.';

-- The follower finds the held message of a key among the pending ones.
CREATE INDEX outbox_pending_by_supersede_key ON outbox (supersede_key)
    WHERE supersede_key IS NOT NULL AND delivered_at IS NULL AND failed_at IS NULL;
COMMENT ON INDEX outbox_pending_by_supersede_key IS 'Pending messages that a later message with the same key may replace.';
