//! {{NAME}}: a cnode service plugin (`{{ID}}`).
//!
//! Routes (the node serves them at `/v1/services/{{ID}}/…`):
//! - `GET /`: counts its visits in the plugin's private key-value store and
//!   answers `{"plugin": "{{ID}}", "visits": N}`.
//! - `GET /notices?region=u33d`: the region's newest `org.cnode.notices`
//!   records, as `{"notices": [{"id", "created_at", "body"}, …]}`.
//!
//! Every call runs in a fresh instance: keep state in `kv` or in records,
//! never in statics.

wit_bindgen::generate!({ world: "service", path: "wit" });

use cnode::plugin::{kv, log, records, types::ErrorCode};
use serde_json::json;

struct Plugin;

fn reply(status: u16, body: serde_json::Value) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_string().into_bytes(),
    }
}

/// A failed host call as an answer: `denied` (the user did not grant the
/// capability) is 403, a bad argument 400, anything else 502.
fn host_error(e: cnode::plugin::types::Error) -> Response {
    let status = match e.code {
        ErrorCode::Denied => 403,
        ErrorCode::Invalid => 400,
        _ => 502,
    };
    reply(status, json!({ "error": e.message }))
}

/// The value of `name` in a raw query string.
fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn visits() -> Response {
    let count = match kv::get("visits") {
        Ok(Some(bytes)) => bytes
            .try_into()
            .map(u64::from_le_bytes)
            .unwrap_or_default(),
        Ok(None) => 0,
        Err(e) => return host_error(e),
    } + 1;
    if let Err(e) = kv::set("visits", &count.to_le_bytes()) {
        return host_error(e);
    }
    log::log(log::Level::Debug, &format!("visit {count}"));
    reply(200, json!({ "plugin": "{{ID}}", "visits": count }))
}

fn notices(query: &str) -> Response {
    let Some(region) = query_param(query, "region") else {
        return reply(400, json!({ "error": "give ?region=GEOHASH (4 characters)" }));
    };
    let q = records::RecordQuery {
        region: Some(region.into()),
        near: None,
        text: None,
        collection: Some("org.cnode.notices".into()),
        author: None,
        since_ms: None,
        until_ms: None,
        limit: 20,
        cursor: None,
    };
    match records::query(&q) {
        Ok(page) => {
            let notices: Vec<_> = page
                .records
                .iter()
                .map(|r| {
                    json!({
                        "id": r.id,
                        "created_at": r.created_at,
                        "body": serde_json::from_str::<serde_json::Value>(&r.body_json)
                            .unwrap_or_default(),
                    })
                })
                .collect();
            reply(200, json!({ "notices": notices }))
        }
        Err(e) => host_error(e),
    }
}

impl Guest for Plugin {
    fn handle(request: Request) -> Response {
        match (request.method.as_str(), request.path.as_str()) {
            ("GET", "/") => visits(),
            ("GET", "/notices") => notices(&request.query),
            (_, "/" | "/notices") => reply(405, json!({ "error": "use GET" })),
            _ => reply(404, json!({ "error": "no such route" })),
        }
    }

    fn on_record(_record: StoredRecord) {}

    fn tick() {}
}

export!(Plugin);
