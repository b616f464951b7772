//! A store failure on a read route is an operator's problem to see: the
//! caller gets the standard 503 body, the failure is logged with its cause
//! and counted in `homeward_store_errors_total`.

use crate::support::*;

async fn store_errors(api: &Api) -> u64 {
    let metrics = api
        .with_token(OPERATOR_TOKEN)
        .metrics_text()
        .await
        .expect("metrics answer");
    assert_eq!(metrics.status, 200, "{}", metrics.text);
    let text = metrics.text;
    text.lines()
        .find_map(|l| l.strip_prefix("homeward_store_errors_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no homeward_store_errors_total in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_read_answers_503_and_is_counted() {
    let pair = Pair::manual().await;
    let (th, kh) = (pair.th_api(), pair.kh_api());
    let case = case_ref("TH", "KH", 1);
    let m = referral("TH", "KH", &case, 1);
    let id = m["message_id"].as_str().unwrap().to_string();
    assert_eq!(th.submit(&m).await.unwrap().status, 202);
    let done = step_one(pair.th_worker(), &th, &id).await;
    assert_eq!(done["state"], "delivered");
    assert_eq!(store_errors(&kh).await, 0);

    // The inbox table goes away behind the gateway's back.
    let url = database_url(pair.data.path(), "KH");
    let pool = any_pool(&url).await;
    sqlx::query("ALTER TABLE inbox RENAME TO inbox_away")
        .execute(&pool)
        .await
        .expect("rename");
    let routes = [
        "/v1/inbox".to_string(),
        format!("/v1/cases/{case}"),
        format!("/v1/messages/{id}"),
    ];
    for route in &routes {
        let r = kh.get(route).await.unwrap();
        assert_eq!(r.status, 503, "{route}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "store_unavailable", "{route}");
        assert!(
            r.body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("retry later"),
            "{route}: {}",
            r.body
        );
    }
    assert_eq!(store_errors(&kh).await, routes.len() as u64);

    sqlx::query("ALTER TABLE inbox_away RENAME TO inbox")
        .execute(&pool)
        .await
        .expect("rename back");
    pool.close().await;
    let r = kh.inbox(None, None).await.unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        r.body["messages"].as_array().unwrap().len(),
        1,
        "nothing was lost"
    );
    pair.stop().await;
}
