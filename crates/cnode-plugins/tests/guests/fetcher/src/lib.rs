//! Test guest: makes the outgoing HTTP request its caller describes and
//! reports what the host answered.
//!
//! The request body is the fetch to make, as text: the method on the first
//! line, the URL on the second, then `name: value` header lines, an empty
//! line and the body. The answer is 200 with `x-fetch: ok` and the fetched
//! response (`x-status`, its headers as `x-h-<name>`, its body), or 200 with
//! `x-fetch: <error code>` and the error message as the body.

wit_bindgen::generate!({ world: "service", path: "../../../../../wit" });

use cnode::plugin::{http, types::ErrorCode};

struct Fetcher;

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

impl Guest for Fetcher {
    fn handle(request: Request) -> Response {
        let text = String::from_utf8_lossy(&request.body).into_owned();
        let (head, body) = text.split_once("\n\n").unwrap_or((&text, ""));
        let mut lines = head.lines();
        let method = lines.next().unwrap_or("GET").trim().to_string();
        let url = lines.next().unwrap_or("").trim().to_string();
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
            .collect();
        match http::fetch(&http::OutgoingRequest {
            method,
            url,
            headers,
            body: body.as_bytes().to_vec(),
        }) {
            Ok(r) => {
                let mut headers = vec![
                    ("x-fetch".to_string(), "ok".to_string()),
                    ("x-status".to_string(), r.status.to_string()),
                ];
                headers.extend(r.headers.into_iter().map(|(n, v)| (format!("x-h-{n}"), v)));
                Response {
                    status: 200,
                    headers,
                    body: r.body,
                }
            }
            Err(e) => Response {
                status: 200,
                headers: vec![("x-fetch".to_string(), code(&e).to_string())],
                body: e.message.into_bytes(),
            },
        }
    }

    fn on_record(_: StoredRecord) {}

    fn tick() {}
}

export!(Fetcher);
