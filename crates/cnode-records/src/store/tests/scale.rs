//! Timing at scale: a measurement run by hand, not a check.

use super::*;

/// Timing at scale, run by hand:
/// `CNODE_BENCH_N=200000 cargo test -p cnode-records --lib store::tests::scale::scale -- --ignored --nocapture`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "slow: a measurement, not a check"]
async fn scale() {
    use std::time::Instant;

    let n: usize = std::env::var("CNODE_BENCH_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200_000);
    let words = [
        "coffee",
        "market",
        "temple",
        "noodles",
        "massage",
        "yoga",
        "bicycle",
        "repair",
        "guesthouse",
        "ร้านกาแฟ",
        "ตลาด",
        "วัด",
        "ก๋วยเตี๋ยว",
        "นวด",
        "清迈",
        "夜市",
        "咖啡",
        "寺庙",
        "workshop",
        "concert",
        "rental",
        "apartment",
        "language",
        "exchange",
        "volunteer",
        "garden",
        "bakery",
        "vegan",
        "music",
        "festival",
    ];
    let mut rng = 0x9e3779b97f4a7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let (w5q6_lat, w5q6_lon) = {
        let c = geo::decode("w5q6").unwrap();
        (c.lat, c.lon)
    };
    // CNODE_BENCH_DIR keeps the database, so later runs only query.
    let (_dir, store) = match std::env::var("CNODE_BENCH_DIR") {
        Ok(d) => (
            None,
            RecordStore::new(Store::open(std::path::Path::new(&d)).unwrap()),
        ),
        Err(_) => {
            let (dir, store) = open();
            (Some(dir), store)
        }
    };
    if let Ok(kib) = std::env::var("CNODE_BENCH_CACHE_KIB") {
        let kib: i64 = kib.parse().unwrap();
        store
            .db()
            .call(move |c| c.pragma_update(None, "cache_size", -kib))
            .await
            .unwrap();
    }
    if store.count(None).await.unwrap() < n as u64 {
        let t = Instant::now();
        let keys: Vec<UserKey> = (0..=255u8).map(key).collect();
        let mut records = Vec::with_capacity(n);
        for i in 0..n {
            let mut pick = || words[(next() % words.len() as u64) as usize];
            let title = format!("{} {} {}", pick(), pick(), pick());
            let desc = format!(
                "{} {} {} {} near the old city, open daily {} {}",
                pick(),
                pick(),
                pick(),
                pick(),
                pick(),
                pick()
            );
            let lat = w5q6_lat + ((next() % 10_000) as f64 / 10_000.0 - 0.5) * 0.17;
            let lon = w5q6_lon + ((next() % 10_000) as f64 / 10_000.0 - 0.5) * 0.35;
            let k = &keys[i % 256];
            records.push(
                UnsignedRecord {
                    key: format!("k{i}"),
                    body: json!({"title": title, "description": desc}),
                    author: k.did(),
                    region: geo::encode(lat, lon, 7),
                    deleted: false,
                    collection: "org.cnode.notices".into(),
                    created_at: T0 + (next() % 86_400_000),
                    expires_at: None,
                }
                .sign(k),
            );
        }
        eprintln!("made {n} records in {:?}", t.elapsed());
        let t = Instant::now();
        let cols: usize = records
            .iter()
            .map(|r| prepare_row(r).map(|row| row.text.len()).unwrap_or(0))
            .sum();
        eprintln!(
            "computing the columns alone: {:?} ({cols} bytes of text)",
            t.elapsed()
        );
        let t = Instant::now();
        let mut batch_times = Vec::new();
        for chunk in records.chunks(1000) {
            let bt = Instant::now();
            store.insert_many(chunk.to_vec(), T0).await.unwrap();
            batch_times.push(bt.elapsed());
        }
        let total = t.elapsed();
        eprintln!(
            "inserted {n} in batches of 1000: {total:?} ({:.0}/s); last batch {:?}",
            n as f64 / total.as_secs_f64(),
            batch_times.last().unwrap()
        );
        let db_size = std::fs::metadata(store.db().path())
            .map(|m| m.len())
            .unwrap_or(0);
        eprintln!("db file {} MB", db_size / 1_000_000);
    }
    if std::env::var("CNODE_BENCH_INSERT_ONLY").is_ok() {
        return;
    }
    let t = Instant::now();
    let items = store.sync_items(region("w5q6")).await.unwrap();
    eprintln!("sync_items: {} in {:?}", items.len(), t.elapsed());

    async fn time(store: &RecordStore, label: &str, qs: Vec<Query>) {
        if std::env::var("CNODE_BENCH_ONLY").is_ok_and(|only| !label.contains(&only)) {
            return;
        }
        eprintln!("{label}: start");
        let mut times = Vec::new();
        let mut found = 0;
        for q in qs {
            let t = Instant::now();
            let page = store.query_at(q, T0).await.unwrap();
            times.push(t.elapsed());
            found += page.records.len();
        }
        times.sort();
        let p = |x: f64| times[((times.len() as f64 * x) as usize).min(times.len() - 1)];
        eprintln!(
            "{label:32} p50 {:>9.2?} p99 {:>9.2?} max {:>9.2?} (avg {} results)",
            p(0.5),
            p(0.99),
            p(1.0),
            found / times.len()
        );
    }
    let mut centre = || {
        (
            w5q6_lat + ((next() % 1000) as f64 / 1000.0 - 0.5) * 0.15,
            w5q6_lon + ((next() % 1000) as f64 / 1000.0 - 0.5) * 0.3,
            words[(next() % words.len() as u64) as usize],
        )
    };
    let mut qs = |radius: f64, with_text: bool, with_near: bool, order: Order| -> Vec<Query> {
        // Relevance ranks every match: fewer of those.
        (0..if order == Order::Relevance { 30 } else { 300 })
            .map(|_| {
                let (lat, lon, w) = centre();
                Query {
                    region: Some(region("w5q6")),
                    near: with_near.then_some(Near {
                        lat,
                        lon,
                        radius_m: radius,
                    }),
                    text: with_text.then(|| w.to_owned()),
                    order,
                    ..Query::default()
                }
            })
            .collect()
    };
    for radius in [500.0, 2_000.0, 5_000.0, 20_000.0] {
        time(
            &store,
            &format!("text + {radius} m"),
            qs(radius, true, true, Order::Newest),
        )
        .await;
    }
    for radius in [500.0, 2_000.0, 20_000.0] {
        time(
            &store,
            &format!("{radius} m"),
            qs(radius, false, true, Order::Newest),
        )
        .await;
    }
    time(&store, "text", qs(0.0, true, false, Order::Newest)).await;
    time(
        &store,
        "text, relevance",
        qs(0.0, true, false, Order::Relevance),
    )
    .await;
    time(
        &store,
        "text + 2 km, relevance",
        qs(2_000.0, true, true, Order::Relevance),
    )
    .await;
    time(
        &store,
        "region newest",
        qs(0.0, false, false, Order::Newest),
    )
    .await;
    let authors: Vec<Query> = (0..100u8)
        .map(|i| Query {
            region: Some(region("w5q6")),
            author: Some(key(i).did()),
            ..Query::default()
        })
        .collect();
    time(&store, "author", authors).await;
    let rare: Vec<Query> = (0..50)
        .map(|i| text(&format!("k{}", i * 7919 % n)))
        .collect();
    time(&store, "rare text (no match)", rare).await;
}
