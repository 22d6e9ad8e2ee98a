-- Queue tables are analyzed and vacuumed by the rows they change, not by a share of
-- their size (issue 12). The outbox keeps its delivered messages until they are
-- pruned, so the default thresholds (10 % and 20 % of the table) let its statistics
-- and its dead index entries age while the pending part churns: plans made on
-- statistics taken while the table was young read every pending item of a topic
-- instead of one case's, and the claims stepped over dead entries of delivered and
-- replaced messages.
ALTER TABLE outbox SET (
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
ALTER TABLE carrier_webhooks SET (
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
ALTER TABLE webhook_deliveries SET (
    autovacuum_analyze_scale_factor = 0, autovacuum_analyze_threshold = 2000,
    autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 2000
);
