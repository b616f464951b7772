//! De-identified statistics counted from real exchanges: KH with TH, VN and
//! MY, a seeded set of synthetic cases on the three corridors, taken from
//! referral to handover. The tables are known cell by cell; small cells are
//! suppressed with their complements; both sides of a corridor count alike;
//! an analyst reads statistics and nothing else; facts lost behind the
//! gateway's back come back from the sealed bodies.

use serde_json::{Value, json};

use crate::support::*;
use homeward::gateway::Listeners;

/// The seeded cases, per partner: TH 9 women (2 of them girls of 16) and 5
/// men; VN 6 men; MY 5 women.
fn seeded() -> Vec<(&'static str, Vec<Person>)> {
    let mut th = vec![("female", 30, false); 7];
    th.extend([("female", 16, true); 2]);
    th.extend([("male", 35, false); 5]);
    vec![
        ("TH", th),
        ("VN", vec![("male", 40, false); 6]),
        ("MY", vec![("female", 25, false); 5]),
    ]
}

/// Every seeded case of `partner`, from referral to handover (and, for
/// TH's adult women, a reintegration report: placement with family).
async fn run_seeded(partner: &str, host: &Api, kh: &Api, persons: &[Person]) {
    let cases = run_cases(partner, host, kh, persons, 700, "2026-05-01T10:00:00+07:00").await;
    let reports: Vec<Value> = cases
        .iter()
        .zip(persons)
        .filter(|(_, (sex, _, minor))| partner == "TH" && *sex == "female" && !minor)
        .map(|(case, _)| {
            let mut payload =
                example_payload("reintegration.report", |p| p["case_status"] == "open");
            payload["placement"] = json!("family");
            payload["status"] = json!("stable");
            envelope("reintegration.report", "KH", partner, case, None, payload)
        })
        .collect();
    if !reports.is_empty() {
        exchange(kh, reports).await;
    }
}

/// The cells of a table as `(keys joined by '/', shown)`, and its total.
fn cells(table: &Value) -> (Vec<(String, String)>, String) {
    let group_by: Vec<String> = table["group_by"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap().to_string())
        .collect();
    let cells = table["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            let keys: Vec<&str> = group_by
                .iter()
                .map(|g| c["keys"][g].as_str().unwrap())
                .collect();
            (keys.join("/"), c["shown"].as_str().unwrap().to_string())
        })
        .collect();
    (cells, table["total"]["shown"].as_str().unwrap().to_string())
}

fn owned(cells: &[(&str, &str)]) -> Vec<(String, String)> {
    cells
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn table(api: &Api, query: &str) -> Value {
    let r = api.get(&format!("/v1/statistics?{query}")).await.unwrap();
    assert_eq!(r.status, 200, "{query}: {}", r.body);
    r.body
}

#[tokio::test]
async fn seeded_cases_on_three_corridors_give_the_known_suppressed_tables() {
    let pki = Pki::new();
    let data = tempfile::tempdir().unwrap();
    let listeners: Vec<(&str, Listeners)> = ["KH", "TH", "VN", "MY"]
        .into_iter()
        .map(|cc| (cc, bind()))
        .collect();
    let peer_of = |cc: &str| {
        listeners
            .iter()
            .find(|(c, _)| *c == cc)
            .unwrap()
            .1
            .peer_addr()
    };
    let mut settings = Vec::new();
    for (cc, l) in &listeners {
        let peers: Vec<(&str, std::net::SocketAddr)> = if *cc == "KH" {
            vec![
                ("TH", peer_of("TH")),
                ("VN", peer_of("VN")),
                ("MY", peer_of("MY")),
            ]
        } else {
            vec![("KH", peer_of("KH"))]
        };
        settings.push(settings_for(&pki, cc, data.path(), l, &peers));
    }
    let mut gateways = Vec::new();
    for ((cc, l), s) in listeners.into_iter().zip(settings.clone()) {
        let g = start(s, l).await;
        gateways.push((cc, api(&pki, cc, g.api_addr), g));
    }
    let api_of = |cc: &str| {
        gateways
            .iter()
            .find(|(c, _, _)| *c == cc)
            .unwrap()
            .1
            .clone()
    };
    let kh = api_of("KH");
    for (partner, persons) in seeded() {
        run_seeded(partner, &api_of(partner), &kh, &persons).await;
    }

    // Returnees by corridor and sex: no cell is small.
    let (c, total) = cells(
        &table(
            &kh,
            "count=returnees&from=2026&to=2026&group_by=corridor,sex",
        )
        .await,
    );
    assert_eq!(
        c,
        owned(&[
            ("KH-MY/female", "5"),
            ("KH-TH/female", "9"),
            ("KH-TH/male", "5"),
            ("KH-VN/male", "6"),
        ])
    );
    assert_eq!(total, "25");

    // By corridor and minor: TH's 2 girls are hidden; so is TH's 12
    // (else the corridor's 14 gives the 2 back) and MY's 5 (else the 23
    // adults of the sex-and-minor table give the 12 back).
    let (c, total) =
        cells(&table(&kh, "from=2026-01-01&to=2026-12-31&group_by=corridor,minor").await);
    assert_eq!(
        c,
        owned(&[
            ("KH-MY/no", "<5"),
            ("KH-TH/no", "<5"),
            ("KH-TH/yes", "<5"),
            ("KH-VN/no", "6"),
        ])
    );
    assert_eq!(total, "25");

    // By age band: the estimated ages, at identification.
    let (c, _) = cells(&table(&kh, "from=2026&to=2026&group_by=age_band").await);
    // Two girls beside the total: the 23 adults would give them back.
    assert_eq!(c, owned(&[("15_to_17", "<5"), ("18_and_over", "<5")]));

    // Referrals by corridor and sector, at the referral.
    let (c, total) = cells(
        &table(
            &kh,
            "count=referrals&from=2026-03&to=2026-03&group_by=corridor,sector",
        )
        .await,
    );
    assert_eq!(
        c,
        owned(&[
            ("KH-MY/fishing", "5"),
            ("KH-TH/fishing", "14"),
            ("KH-VN/fishing", "6"),
        ])
    );
    assert_eq!(total, "25");
    // Nothing was referred in April; v1 requests name no return channel.
    let (c, total) = cells(&table(&kh, "count=referrals&from=2026-04&to=2026-04").await);
    assert_eq!((c.len(), total.as_str()), (0, "0"));
    let (c, _) = cells(&table(&kh, "from=2026&to=2026&group_by=return_channel").await);
    assert_eq!(c, owned(&[("unknown", "25")]));
    let (c, total) = cells(
        &table(
            &kh,
            "count=reintegrations&from=2026&to=2026&group_by=outcome,reintegration_status",
        )
        .await,
    );
    assert_eq!((c, total.as_str()), (owned(&[("family/stable", "7")]), "7"));
    // The other year holds nothing.
    let (c, total) = cells(&table(&kh, "from=2025&to=2025&group_by=corridor").await);
    assert_eq!((c.len(), total.as_str()), (0, "0"));

    // Both sides of a corridor count alike.
    let th = api_of("TH");
    for query in [
        "from=2026&to=2026&group_by=corridor,sex",
        "count=referrals&from=2026&to=2026&group_by=corridor,sex,age_band,sector",
    ] {
        let kh_th: Vec<(String, String)> = cells(&table(&kh, query).await)
            .0
            .into_iter()
            .filter(|(k, _)| k.starts_with("KH-TH"))
            .collect();
        let (at_th, _) = cells(&table(&th, query).await);
        assert_eq!(kh_th, at_th, "{query}");
    }

    // Days from referral to acknowledgement: two for every case.
    let r = kh
        .get("/v1/statistics/timings?from=2026&to=2026")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let t = &r.body["timings"][0];
    assert_eq!(
        (
            t["what"].as_str(),
            &t["n"]["count"],
            &t["median_days"],
            &t["p90_days"]
        ),
        (
            Some("referral_to_acknowledgement"),
            &json!(25),
            &json!(2.0),
            &json!(2.0)
        )
    );

    // An analyst reads statistics and nothing else.
    let analyst = kh.with_token(ANALYST_TOKEN);
    let r = analyst
        .get("/v1/statistics?from=2026&to=2026&group_by=sex")
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    let case = case_ref("TH", "KH", 700);
    for path in [
        format!("/v1/cases/{case}"),
        "/v1/inbox".to_string(),
        "/v1/dashboard".to_string(),
        "/v1/timers".to_string(),
        "/v1/audit".to_string(),
        "/v1/sla".to_string(),
        format!("/v1/messages/{}", uuid::Uuid::now_v7()),
    ] {
        let r = analyst.get(&path).await.unwrap();
        assert_eq!(r.status, 403, "{path}: {}", r.body);
    }
    let r = analyst
        .submit(&referral("TH", "KH", &case, 1))
        .await
        .unwrap();
    assert_eq!(r.status, 403, "{}", r.body);

    // Bad queries: each names its parameter.
    for (query, parameter) in [
        ("from=2026&to=2026&group_by=colour", "group_by"),
        ("from=2026&to=2026&group_by=sex,sex", "group_by"),
        ("from=2026-06-01&to=2026-05-31", "to"),
        ("from=2026-02-30&to=2026", "from"),
        ("from=2000&to=2026", "to"),
        ("from=&to=2026", "from"),
    ] {
        let r = kh.get(&format!("/v1/statistics?{query}")).await.unwrap();
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "bad_statistics_query", "{query}");
        assert_eq!(
            r.body["error"]["details"][0]["keyword"], parameter,
            "{query}: {}",
            r.body
        );
    }
    for query in [
        "to=2026",
        "from=2026",
        "from=2026&to=2026&count=people",
        "from=2026&to=2026&k=1",
    ] {
        let r = kh.get(&format!("/v1/statistics?{query}")).await.unwrap();
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["error"]["code"], "bad_query", "{query}");
    }

    // Facts lost behind the gateway's back come back from the sealed
    // bodies when the store is next opened.
    let before = table(
        &kh,
        "count=referrals&from=2026&to=2026&group_by=corridor,sex,age_band,sector",
    )
    .await;
    let kh_settings = settings[0].clone();
    for (_, _, g) in gateways {
        g.stop().await;
    }
    let pool = any_pool(&kh_settings.database.url).await;
    sqlx::query("DELETE FROM case_facts")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    let sealer = homeward::store::seal::Sealer::from_settings(&kh_settings.encryption).unwrap();
    let store = homeward::store::Store::open(&kh_settings.database.url, sealer)
        .await
        .unwrap();
    let filled = homeward::app::statistics::backfill(&store).await.unwrap();
    // 25 cases of five messages, and 7 reports.
    assert_eq!(filled, 25 * 5 + 7);
    let query = homeward::domain::statistics::Query::parse(
        Some("referrals"),
        Some("2026"),
        Some("2026"),
        Some("corridor,sex,age_band,sector"),
        5,
    )
    .unwrap();
    let after = homeward::app::statistics::table(&store, &query)
        .await
        .unwrap();
    assert_eq!(serde_json::to_value(&after).unwrap(), before);
    assert_eq!(
        homeward::app::statistics::backfill(&store).await.unwrap(),
        0,
        "once"
    );
    store.close().await;
}
