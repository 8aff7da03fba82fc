//! The candidate queries' plans: the intended indexes, statements prepared once.

use super::*;

/// The query plan of the candidate query of `q` found by `strategy`.
async fn plan_of(store: &RecordStore, mut q: Query, strategy: Via, keyset: bool) -> String {
    if keyset {
        q.cursor = Some(format!("n.{T0}.{}", "ab".repeat(32)));
    }
    let plan = query::Plan::new(q, T0).unwrap();
    store
        .db()
        .call(move |c| {
            let (sql, values) = plan.first_sql(strategy).unwrap();
            assert_eq!(sql.contains("(r.created_at, r.id) < (?, ?)"), keyset);
            let mut st = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
            let rows = st.query_map(rusqlite::params_from_iter(values), |r| {
                r.get::<_, String>(3)
            })?;
            rows.collect::<Result<Vec<_>, _>>().map(|v| v.join(" | "))
        })
        .await
        .unwrap()
}

#[tokio::test]
async fn query_plans_use_the_intended_indexes() {
    let (_dir, store) = open();
    let near = Some(Near {
        lat: CHIANG_MAI.0,
        lon: CHIANG_MAI.1,
        radius_m: 2_000.0,
    });
    let full = Query {
        region: Some(region("w5q6")),
        near,
        text: Some("coffee".into()),
        collection: Some("org.cnode.events".into()),
        author: Some(key(1).did()),
        since_ms: Some(T0),
        ..Query::default()
    };
    for keyset in [false, true] {
        let walk = plan_of(&store, full.clone(), Via::Walk, keyset).await;
        assert!(
            walk.contains("USING COVERING INDEX records_region (region=?"),
            "{walk}"
        );
        assert!(!walk.contains("TEMP B-TREE"), "{walk}");
        let walk = plan_of(
            &store,
            Query {
                region: None,
                ..full.clone()
            },
            Via::Walk,
            keyset,
        )
        .await;
        assert!(walk.contains("USING INDEX records_created"), "{walk}");
        assert!(!walk.contains("TEMP B-TREE"), "{walk}");
        let geo = plan_of(&store, full.clone(), Via::Geo, keyset).await;
        assert!(
            geo.contains("USING COVERING INDEX records_geo (<expr>>? AND <expr><?)"),
            "{geo}"
        );
        let walk = plan_of(&store, full.clone(), Via::GeoWalk, keyset).await;
        assert!(
            walk.contains("USING COVERING INDEX records_geo (<expr>=? AND "),
            "{walk}"
        );
        assert!(!walk.contains("TEMP B-TREE"), "{walk}");
        let author = plan_of(&store, full.clone(), Via::Author, keyset).await;
        assert!(
            author.contains("USING INDEX records_slot (author=? AND collection=?)"),
            "{author}"
        );
        let text = plan_of(&store, full.clone(), Via::Text, keyset).await;
        assert!(
            text.contains("VIRTUAL TABLE INDEX") && text.contains("USING INTEGER PRIMARY KEY"),
            "{text}"
        );
    }
    let sync: String = store
        .db()
        .call(|c| {
            c.query_row(
                "EXPLAIN QUERY PLAN SELECT created_at, id FROM records INDEXED BY records_region
                 WHERE region = ?1 AND (expires_at IS NULL OR expires_at > ?2) ORDER BY created_at, id",
                rusqlite::params!["w5q6", 1],
                |r| r.get(3),
            )
        })
        .await
        .unwrap();
    assert!(sync.contains("COVERING INDEX records_region"), "{sync}");
}

/// A statement that SQLite must re-prepare on each run (as it does with a
/// bound LIMIT) costs a parse and a plan per query.
#[tokio::test]
async fn candidate_statements_are_not_reprepared() {
    let (_dir, store) = open();
    store.insert(R::new(1, "a", T0).sign(), T0).await.unwrap();
    for strategy in [Via::Walk, Via::GeoWalk, Via::Geo, Via::Text, Via::Author] {
        let n = store
            .db()
            .call(move |c| {
                let mut last = 0;
                for i in 0..5u64 {
                    let q = Query {
                        region: Some(region("w5q6")),
                        near: Some(Near {
                            lat: CHIANG_MAI.0 + 0.0001 * i as f64,
                            lon: CHIANG_MAI.1,
                            radius_m: 2_000.0,
                        }),
                        text: Some(format!("coffee{i}")),
                        cursor: Some(format!("n.{}.{}", T0 + i, "ab".repeat(32))),
                        ..Query::default()
                    };
                    let plan = query::Plan::new(q, T0 + i).unwrap();
                    let (sql, values) = plan.first_sql(strategy).unwrap();
                    let mut st = c.prepare_cached(&sql)?;
                    let _ = st
                        .query_map(rusqlite::params_from_iter(values), |_| Ok(()))?
                        .count();
                    last = st.get_status(rusqlite::StatementStatus::RePrepare);
                }
                Ok(last)
            })
            .await
            .unwrap();
        assert_eq!(n, 0, "{strategy:?}");
    }
}
