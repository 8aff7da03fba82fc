//! `cnode post`, `cnode query`, `cnode records rm` and `cnode region …`.
//!
//! Records are signed here, with the user's key from the keystore, and sent
//! to the running node as canonical CBOR; the node validates them like any
//! record from the network.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Subcommand};
use cnode_api::{PostResult, RecordPage, RecordView, RegionChange};
use cnode_node::{DataDir, RegionInfo};
use cnode_records::{UnsignedRecord, now_ms};
use reqwest::Method;

use crate::{client::ApiClient, output};

/// Arguments of `cnode post`.
#[derive(Debug, Args)]
pub(crate) struct PostArgs {
    /// The collection, e.g. org.cnode.events, org.cnode.listings, org.cnode.notices.
    #[arg(long, short)]
    collection: String,
    /// Where the record is, `LAT,LON` in degrees (e.g. 18.7883,98.9853).
    #[arg(long, value_name = "LAT,LON", allow_hyphen_values = true)]
    at: String,
    /// The slot key: posting again with the same key replaces the record
    /// [default: a new random key].
    #[arg(long, short)]
    key: Option<String>,
    /// Sets `title` in the body.
    #[arg(long)]
    title: Option<String>,
    /// The body as a JSON object.
    #[arg(long, value_name = "JSON", conflicts_with = "body_file")]
    body: Option<String>,
    /// Read the body (a JSON object) from a file, `-` for stdin.
    #[arg(long, value_name = "FILE")]
    body_file: Option<PathBuf>,
    /// The record disappears everywhere after this long, e.g. 90m, 12h, 7d.
    #[arg(long, value_name = "DURATION")]
    expires: Option<String>,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

/// Arguments of `cnode query`.
#[derive(Debug, Args)]
pub(crate) struct QueryArgs {
    /// Centre of a radius search, `LAT,LON`.
    #[arg(
        long,
        value_name = "LAT,LON",
        allow_hyphen_values = true,
        conflicts_with = "region"
    )]
    near: Option<String>,
    /// Radius around --near, e.g. 500m or 5km.
    #[arg(long, default_value = "5km", requires = "near")]
    radius: String,
    /// Only this region (4-character geohash, e.g. w5q6).
    #[arg(long)]
    region: Option<String>,
    /// Text to find (substring; Thai and Chinese work too).
    #[arg(long)]
    text: Option<String>,
    /// Only this collection.
    #[arg(long, short)]
    collection: Option<String>,
    /// Only this author (did:key).
    #[arg(long)]
    author: Option<String>,
    /// Most records to show.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Order by text relevance instead of newest first (needs --text).
    #[arg(long, requires = "text")]
    relevance: bool,
    /// Print JSON for scripts.
    #[arg(long)]
    json: bool,
}

/// `cnode records …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RecordsCommand {
    /// Delete one of your records everywhere (publishes a tombstone).
    Rm {
        /// The record's collection.
        #[arg(long, short)]
        collection: String,
        /// The record's key.
        #[arg(long, short)]
        key: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// `cnode region …`.
#[derive(Debug, Subcommand)]
pub(crate) enum RegionCommand {
    /// Serve a region: hold, sync and serve its records.
    Join {
        /// A 4-character geohash, e.g. w5q6 (Chiang Mai).
        region: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Stop serving a region and delete its records from this node.
    Leave {
        /// The 4-character geohash.
        region: String,
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
    /// List the regions this node serves.
    Ls {
        /// Print JSON for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Parses `90s`, `30m`, `12h`, `7d`, `2w`.
pub(crate) fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .with_context(|| format!("{s:?} is not a duration (e.g. 90m, 12h, 7d)"))?;
    let secs = match unit.trim() {
        "s" => 1,
        "m" | "min" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => bail!("{s:?} is not a duration (units: s, m, h, d, w; e.g. 90m, 12h, 7d)"),
    };
    if n == 0 {
        bail!("the duration must be longer than 0");
    }
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// A `LAT,LON` flag value, with the flag's name in the error.
fn parse_point(flag: &str, value: &str) -> Result<(f64, f64)> {
    cnode_records::geo::parse_point(value).map_err(|e| anyhow::anyhow!("{flag} {value:?}: {e}"))
}

fn read_body(args: &PostArgs) -> Result<serde_json::Value> {
    let text = match (&args.body, &args.body_file) {
        (Some(b), _) => Some(b.clone()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut s = String::new();
            std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
                .context("cannot read the body from stdin")?;
            Some(s)
        }
        (None, Some(path)) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?,
        ),
        (None, None) => None,
    };
    let mut body = match text {
        Some(t) => serde_json::from_str(&t).context("the body is not valid JSON")?,
        None => serde_json::Value::Object(Default::default()),
    };
    let Some(obj) = body.as_object_mut() else {
        bail!("the body must be a JSON object, e.g. {{\"title\": \"…\"}}");
    };
    if let Some(title) = &args.title {
        obj.insert("title".into(), title.clone().into());
    }
    Ok(body)
}

fn random_key() -> String {
    let bytes: [u8; 8] = rand::random();
    hex::encode(bytes)
}

/// `cnode post`.
pub(crate) async fn post(dir: &DataDir, args: PostArgs) -> Result<()> {
    let (lat, lon) = parse_point("--at", &args.at)?;
    let body = read_body(&args)?;
    let created_at = now_ms();
    let expires_at = match &args.expires {
        Some(d) => Some(created_at + parse_duration(d)?.as_millis() as u64),
        None => None,
    };
    // Check the node is there before asking for a passphrase.
    let client = ApiClient::from_data_dir(dir)?;
    let user = crate::user::unlock_default_user(dir)?;
    let record = UnsignedRecord {
        key: args.key.clone().unwrap_or_else(random_key),
        body,
        author: user.did(),
        region: cnode_records::geo::encode(lat, lon, 7),
        deleted: false,
        collection: args.collection.clone(),
        created_at,
        expires_at,
    }
    .sign(&user);
    let key = record.key.clone();
    let result: PostResult = client
        .post_bytes(&["v1", "records"], "application/cbor", record.encode())
        .await?;
    if args.json {
        output::json(&serde_json::json!({
            "id": result.id, "status": result.status, "key": key,
            "collection": record.collection, "geohash": record.region,
            "author": record.author.to_string(),
        }));
    } else {
        println!(
            "{} {} (key {key}, {})",
            result.status, result.id, record.region
        );
    }
    Ok(())
}

fn summary(r: &RecordView) -> String {
    let pick = |k: &str| r.body.get(k).and_then(|v| v.as_str()).map(str::to_owned);
    let text = pick("title")
        .or_else(|| pick("body"))
        .or_else(|| pick("description"))
        .unwrap_or_else(|| {
            let s = r.body.to_string();
            s.chars().take(60).collect()
        });
    text.chars().take(70).collect()
}

/// `cnode query`.
pub(crate) async fn query(dir: &DataDir, args: QueryArgs) -> Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    let mut params: Vec<(&str, String)> = vec![("limit", args.limit.clamp(1, 500).to_string())];
    if let Some(near) = &args.near {
        let (lat, lon) = parse_point("--near", near)?;
        params.push(("near", format!("{lat},{lon}")));
        params.push(("radius", args.radius.clone()));
    }
    let opt = [
        ("region", &args.region),
        ("text", &args.text),
        ("collection", &args.collection),
        ("author", &args.author),
    ];
    for (k, v) in opt {
        if let Some(v) = v {
            params.push((k, v.clone()));
        }
    }
    if args.relevance {
        params.push(("order", "relevance".into()));
    }
    let page: RecordPage = client.get_json_query(&["v1", "records"], &params).await?;
    if args.json {
        output::json(&page);
        return Ok(());
    }
    if page.records.is_empty() {
        println!("no records found");
        return Ok(());
    }
    for r in &page.records {
        let when = r.created_at / 1000;
        let dist = r
            .distance_m
            .map(|d| {
                if d >= 1000.0 {
                    format!(" {:.1} km", d / 1000.0)
                } else {
                    format!(" {d:.0} m")
                }
            })
            .unwrap_or_default();
        println!(
            "{}  {:<20} {}{}  [{} {}]",
            &r.id[..12],
            r.collection,
            summary(r),
            dist,
            r.geohash,
            when
        );
    }
    if page.next_cursor.is_some() {
        println!("(more: raise --limit)");
    }
    Ok(())
}

/// `cnode records …`.
pub(crate) async fn records(dir: &DataDir, cmd: RecordsCommand) -> Result<()> {
    match cmd {
        RecordsCommand::Rm {
            collection,
            key,
            json,
        } => {
            let client = ApiClient::from_data_dir(dir)?;
            let user = crate::user::unlock_default_user(dir)?;
            let author = user.did().to_string();
            // Find the live record of this slot to learn its region.
            let mut cursor: Option<String> = None;
            let current = loop {
                let mut params = vec![
                    ("author", author.clone()),
                    ("collection", collection.clone()),
                    ("limit", "500".to_string()),
                ];
                if let Some(c) = &cursor {
                    params.push(("cursor", c.clone()));
                }
                let page: RecordPage = client.get_json_query(&["v1", "records"], &params).await?;
                if let Some(r) = page.records.into_iter().find(|r| r.key == key) {
                    break r;
                }
                match page.next_cursor {
                    Some(c) => cursor = Some(c),
                    None => bail!(
                        "you have no record with key {key:?} in {collection} on this node (see `cnode query --author {author}`)"
                    ),
                }
            };
            let tombstone = UnsignedRecord {
                key: key.clone(),
                body: serde_json::Value::Object(Default::default()),
                author: user.did(),
                region: current.geohash.clone(),
                deleted: true,
                collection: collection.clone(),
                created_at: now_ms().max(current.created_at + 1),
                expires_at: current.expires_at,
            }
            .sign(&user);
            let result: PostResult = client
                .post_bytes(&["v1", "records"], "application/cbor", tombstone.encode())
                .await?;
            if json {
                output::json(&serde_json::json!({
                    "deleted": current.id, "tombstone": result.id, "status": result.status,
                }));
            } else {
                println!(
                    "deleted {} (tombstone {})",
                    &current.id[..12],
                    &result.id[..12]
                );
            }
            Ok(())
        }
    }
}

/// `cnode region …`.
pub(crate) async fn region(dir: &DataDir, cmd: RegionCommand) -> Result<()> {
    let client = ApiClient::from_data_dir(dir)?;
    match cmd {
        RegionCommand::Join { region, json } => {
            let change: RegionChange = client
                .send_json(Method::PUT, &["v1", "regions", &region], None)
                .await?;
            if json {
                output::json(&change);
            } else if change.changed {
                println!(
                    "now serving {} (its records sync in the background)",
                    change.region
                );
            } else {
                println!("already serving {}", change.region);
            }
            Ok(())
        }
        RegionCommand::Leave { region, json } => {
            let change: RegionChange = client
                .send_json(Method::DELETE, &["v1", "regions", &region], None)
                .await?;
            if json {
                output::json(&change);
            } else if change.changed {
                println!(
                    "left {}; its records were deleted from this node",
                    change.region
                );
            } else {
                println!("{} was not served", change.region);
            }
            Ok(())
        }
        RegionCommand::Ls { json } => {
            let regions: Vec<RegionInfo> = client.get_json(&["v1", "regions"]).await?;
            if json {
                output::json(&regions);
            } else if regions.is_empty() {
                println!("no regions served; join one with `cnode region join w5q6`");
            } else {
                for r in regions {
                    println!("{}  {} records  {} peers", r.region, r.records, r.peers);
                }
            }
            Ok(())
        }
    }
}
