-- Outbound webhook endpoint secrets can be rotated with an overlap window: during it
-- every delivery carries a signature under the new secret and one under the previous.
ALTER TABLE webhook_endpoints
    ADD COLUMN previous_secret_sealed bytea,
    ADD COLUMN previous_secret_until  timestamptz,
    ADD CHECK ((previous_secret_sealed IS NULL) = (previous_secret_until IS NULL));
COMMENT ON COLUMN webhook_endpoints.previous_secret_sealed IS 'The secret replaced by the latest rotation, sealed like secret_sealed; deliveries are signed with it too until previous_secret_until. NULL when none (or once deleted).';
COMMENT ON COLUMN webhook_endpoints.previous_secret_until IS 'End of the overlap window of the previous secret.';
