//! Hand-off times per stage, read from the stack's `case_events` (read only).
//!
//! For each case, the time from one transition (`at` of event k) to the next
//! (`at` of event k+1) is the time the case spent in the state between them: its
//! stage. `at` is `now()` of the transaction that wrote the transition (PostgreSQL's
//! transaction start), which the schema documents as the commit time.

use std::{collections::BTreeMap, time::Duration};

use chrono::{DateTime, Utc};
use sqlx::PgPool;
use uuid::Uuid;

/// One row of `case_events`, as the bench reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRow {
    /// The case.
    pub case_id: Uuid,
    /// The version the transition produced.
    pub version: i32,
    /// State after the transition.
    pub to_state: String,
    /// The event.
    pub event: String,
    /// Who caused it.
    pub actor_id: String,
    /// When.
    pub at: DateTime<Utc>,
}

/// Time spent in one state, over every case that passed through it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageSamples {
    /// One sample per case and visit.
    pub samples: Vec<Duration>,
    /// Who moved the cases out of the state (actor id → count).
    pub movers: BTreeMap<String, usize>,
}

/// What the event log says about a set of cases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StageReport {
    /// Stages in the order they were first seen along a case's log.
    pub order: Vec<String>,
    /// Samples per stage.
    pub stages: BTreeMap<String, StageSamples>,
    /// `opened` → `reactivated` per reactivated case.
    pub opened_to_reactivated: Vec<Duration>,
    /// Event sequences seen (e.g. `opened>proofs_accepted>risk_cleared>restored`) → count.
    pub paths: BTreeMap<String, usize>,
}

impl StageReport {
    /// The most frequent mover of `stage`, if any.
    pub fn main_mover(&self, stage: &str) -> Option<&str> {
        self.stages
            .get(stage)?
            .movers
            .iter()
            .max_by_key(|(_, n)| **n)
            .map(|(who, _)| who.as_str())
    }
}

fn between(a: DateTime<Utc>, b: DateTime<Utc>) -> Duration {
    (b - a).to_std().unwrap_or_default()
}

/// Groups `rows` (any order) by case and turns consecutive transitions into stage times.
pub fn analyse(mut rows: Vec<EventRow>) -> StageReport {
    rows.sort_by_key(|a| (a.case_id, a.version));
    let mut report = StageReport::default();
    for case in rows.chunk_by(|a, b| a.case_id == b.case_id) {
        for pair in case.windows(2) {
            let (from, to) = (&pair[0], &pair[1]);
            let stage = from.to_state.clone();
            if !report.order.contains(&stage) {
                report.order.push(stage.clone());
            }
            let entry = report.stages.entry(stage).or_default();
            entry.samples.push(between(from.at, to.at));
            *entry.movers.entry(to.actor_id.clone()).or_default() += 1;
        }
        let path: Vec<&str> = case.iter().map(|e| e.event.as_str()).collect();
        *report.paths.entry(path.join(">")).or_default() += 1;
        if let (Some(first), Some(last)) = (case.first(), case.last())
            && first.event == "opened"
            && last.to_state == "reactivated"
        {
            report
                .opened_to_reactivated
                .push(between(first.at, last.at));
        }
    }
    report
}

/// Reads the event log of `case_ids` (one query).
pub async fn read_rows(pool: &PgPool, case_ids: &[Uuid]) -> anyhow::Result<Vec<EventRow>> {
    let rows: Vec<(Uuid, i32, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT case_id, version, to_state::text, event::text, actor_id, at
         FROM case_events WHERE case_id = ANY($1) ORDER BY case_id, version",
    )
    .bind(case_ids)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(case_id, version, to_state, event, actor_id, at)| EventRow {
                case_id,
                version,
                to_state,
                event,
                actor_id,
                at,
            },
        )
        .collect())
}

/// Reads the event log of `case_ids` and analyses it.
pub async fn stage_latencies(pool: &PgPool, case_ids: &[Uuid]) -> anyhow::Result<StageReport> {
    Ok(analyse(read_rows(pool, case_ids).await?))
}

#[cfg(test)]
mod tests {
    use chrono::TimeDelta;

    use super::*;

    fn row(case: u128, version: i32, to: &str, event: &str, actor: &str, ms: i64) -> EventRow {
        EventRow {
            case_id: Uuid::from_u128(case),
            version,
            to_state: to.into(),
            event: event.into(),
            actor_id: actor.into(),
            at: DateTime::<Utc>::UNIX_EPOCH + TimeDelta::milliseconds(ms),
        }
    }

    fn clean(case: u128, t: [i64; 4]) -> Vec<EventRow> {
        vec![
            row(case, 1, "awaiting_identity", "opened", "subscriber", t[0]),
            row(
                case,
                2,
                "risk_assessment",
                "proofs_accepted",
                "identity-verification",
                t[1],
            ),
            row(
                case,
                3,
                "provisioning",
                "risk_cleared",
                "risk-assessment",
                t[2],
            ),
            row(case, 4, "reactivated", "restored", "provisioning", t[3]),
        ]
    }

    #[test]
    fn stages_are_the_gaps_between_consecutive_transitions() {
        let mut rows = clean(1, [0, 100, 130, 400]);
        rows.extend(clean(2, [1000, 1050, 1060, 1200]));
        rows.push(row(3, 1, "awaiting_identity", "opened", "subscriber", 5));
        rows.reverse();
        let r = analyse(rows);
        assert_eq!(
            r.order,
            ["awaiting_identity", "risk_assessment", "provisioning"]
        );
        let ms = Duration::from_millis;
        assert_eq!(r.stages["awaiting_identity"].samples, [ms(100), ms(50)]);
        assert_eq!(r.stages["risk_assessment"].samples, [ms(30), ms(10)]);
        assert_eq!(r.stages["provisioning"].samples, [ms(270), ms(140)]);
        assert_eq!(r.main_mover("risk_assessment"), Some("risk-assessment"));
        assert_eq!(r.opened_to_reactivated, [ms(400), ms(200)]);
        assert_eq!(r.paths["opened>proofs_accepted>risk_cleared>restored"], 2);
        assert_eq!(r.paths["opened"], 1);
    }
}
