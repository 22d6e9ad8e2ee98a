-- Marks the agent accounts that `reactivation dev` seeds (published password) so that
-- `reactivation serve` can refuse to run on a database that holds one.

ALTER TABLE agents ADD COLUMN demo boolean NOT NULL DEFAULT false;
COMMENT ON COLUMN agents.demo IS 'Seeded by `reactivation dev` with the published demo password; `reactivation serve` refuses to start while such an account exists.';

-- Accounts seeded before this column existed: the six demo names `dev` creates.
UPDATE agents SET demo = true
WHERE username IN ('cs.demo', 'security.demo', 'security2.demo', 'technical.demo', 'supervisor.demo', 'admin.demo');
