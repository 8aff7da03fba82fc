//! Test guest: answers by path, exercising kv, log, clock, random and
//! records through the host.

wit_bindgen::generate!({ world: "service", path: "../../../../../wit" });

use cnode::plugin::{
    clock, kv, log, random, records,
    types::{Error, ErrorCode},
};

struct Echo;

fn param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

fn text(status: u16, body: impl Into<String>) -> Response {
    Response {
        status,
        headers: vec![("content-type".into(), "text/plain".into())],
        body: body.into().into_bytes(),
    }
}

fn failed(e: Error) -> Response {
    let code = match e.code {
        ErrorCode::Denied => "denied",
        ErrorCode::NotFound => "not-found",
        ErrorCode::Invalid => "invalid",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Internal => "internal",
    };
    let status = if e.code == ErrorCode::Denied { 403 } else { 500 };
    text(status, format!("{code}: {}", e.message))
}

impl Guest for Echo {
    fn handle(request: Request) -> Response {
        let q = request.query.as_str();
        match request.path.as_str() {
            "/echo" => Response {
                status: 200,
                headers: vec![
                    ("x-method".into(), request.method),
                    ("x-query".into(), request.query.clone()),
                ],
                body: request.body,
            },
            "/kv/set" => match kv::set(param(q, "key").unwrap_or(""), &request.body) {
                Ok(()) => text(200, "ok"),
                Err(e) => failed(e),
            },
            "/kv/get" => match kv::get(param(q, "key").unwrap_or("")) {
                Ok(Some(v)) => Response { status: 200, headers: vec![], body: v },
                Ok(None) => text(404, "unset"),
                Err(e) => failed(e),
            },
            "/kv/keys" => match kv::list_keys(param(q, "prefix").unwrap_or(""), None, 0) {
                Ok(keys) => text(200, keys.join(",")),
                Err(e) => failed(e),
            },
            "/log" => {
                log::log(log::Level::Info, &String::from_utf8_lossy(&request.body));
                println!("stdout line from echo");
                text(200, "logged")
            }
            "/clock" => text(200, clock::now_ms().to_string()),
            "/random" => text(200, format!("{}", random::bytes(16).len())),
            "/publish" => {
                let collection = param(q, "collection").unwrap_or("org.test.echo");
                let region = param(q, "region").unwrap_or("u33dc0");
                let body = String::from_utf8_lossy(&request.body);
                match records::publish(collection, "k", region, &body, None) {
                    Ok(id) => text(200, id),
                    Err(e) => failed(e),
                }
            }
            "/query" => {
                let query = records::RecordQuery {
                    region: param(q, "region").map(String::from),
                    near: None,
                    text: None,
                    collection: param(q, "collection").map(String::from),
                    author: None,
                    since_ms: None,
                    until_ms: None,
                    limit: 10,
                    cursor: None,
                };
                match records::query(&query) {
                    Ok(page) => text(
                        200,
                        page.records
                            .iter()
                            .map(|r| r.body_json.as_str())
                            .collect::<Vec<_>>()
                            .join("\n"),
                    ),
                    Err(e) => failed(e),
                }
            }
            "/trap" => panic!("asked to trap"),
            _ => text(404, "no such route"),
        }
    }

    fn on_record(rec: StoredRecord) {
        let _ = kv::set("last-record", rec.id.as_bytes());
    }

    fn tick() {
        let n = kv::get("ticks").ok().flatten().map(|v| v.len()).unwrap_or(0);
        let _ = kv::set("ticks", &vec![0u8; n + 1]);
    }
}

export!(Echo);
