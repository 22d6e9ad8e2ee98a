//! Stored rows come back as domain types; a stored value that does not parse is an
//! error, never a silent fallback.

use case_domain::{Channel, Locale, Msisdn, Restoration, risk::RiskTier};
use case_store::{MIGRATOR, risk, testing::open_case_in};
use sqlx::PgPool;

#[sqlx::test(migrator = "MIGRATOR")]
async fn a_case_comes_back_typed(pool: PgPool) {
    let id = open_case_in(&pool, "+8613800138031", "zh-CN").await;
    let case = case_store::load_case(&pool, id).await.unwrap().unwrap();
    assert_eq!(case.msisdn, Msisdn::parse("+8613800138031").unwrap());
    assert_eq!(case.msisdn.masked(), "+86*******8031");
    assert_eq!(case.channel, Channel::App);
    assert_eq!(case.locale, Locale::ZhCn);
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn text_columns_decode_by_parsing_and_refuse_unknown_values(pool: PgPool) {
    let channel: Channel = sqlx::query_scalar("SELECT 'hotline'::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(channel, Channel::Hotline);
    let restoration: Restoration = sqlx::query_scalar("SELECT 'inbound_only'::text")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(restoration, Restoration::InboundOnly);
    // The CHECK constraints keep such values out of the tables; reading one anyway fails.
    assert!(
        sqlx::query_scalar::<_, Channel>("SELECT 'fax'::text")
            .fetch_one(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query_scalar::<_, Locale>("SELECT 'fr'::text")
            .fetch_one(&pool)
            .await
            .is_err()
    );
    assert!(
        sqlx::query_scalar::<_, Msisdn>("SELECT 'not a number'::text")
            .fetch_one(&pool)
            .await
            .is_err()
    );
    let bound: String = sqlx::query_scalar("SELECT $1::text")
        .bind(Msisdn::parse("13800138032").unwrap())
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(bound, "+8613800138032");
}

#[sqlx::test(migrator = "MIGRATOR")]
async fn recorded_signals_that_do_not_parse_are_an_error(pool: PgPool) {
    let id = open_case_in(&pool, "+8613800138033", "en").await;
    // No CHECK guards the JSON: a count that is not a count is stored...
    sqlx::query(
        "INSERT INTO risk_assessments (id, case_id, tier, reason_codes, needs, signals)
         VALUES (gen_random_uuid(), $1, 'medium', '{}', '{}', $2)",
    )
    .bind(id)
    .bind(
        serde_json::json!({"fraud_linked_contacts": "many", "sms_peak_per_hour": 0,
        "intl_calls_24h": 0, "suspension_reason": null}),
    )
    .execute(&pool)
    .await
    .unwrap();
    // ...and reading it back is an error, not zero.
    assert!(risk::latest_assessment(&pool, id).await.is_err());

    let signals = case_domain::risk::RecordedSignals {
        fraud_linked_contacts: 1,
        flagged_contacts: vec!["+8613900000001".into()],
        ..Default::default()
    };
    risk::save_assessment(&pool, id, RiskTier::Medium, &[], &[], &signals, 1)
        .await
        .unwrap();
    let latest = risk::latest_assessment(&pool, id).await.unwrap().unwrap();
    assert_eq!(latest.signals, signals);
}
