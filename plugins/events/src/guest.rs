//! The WebAssembly side: `cnode:plugin` bindings from `wit-bindgen`, a
//! [`Host`] over the imports, and the `service` world's exports.

// The generated glue passes flattened records as many arguments.
#![allow(clippy::too_many_arguments)]

wit_bindgen::generate!({ world: "service", path: "../../wit" });

use cnode::plugin::{clock, log, records, types};

use crate::host::{ErrorCode, Host, HostError, Level, Page, Query, Record};

/// The host imports, as [`Host`].
struct Imports;

impl Host for Imports {
    fn query(&self, query: &Query) -> Result<Page, HostError> {
        let q = records::RecordQuery {
            region: Some(query.region.clone()),
            near: None,
            text: None,
            collection: Some(query.collection.clone()),
            author: None,
            since_ms: None,
            until_ms: None,
            limit: query.limit,
            cursor: query.cursor.clone(),
        };
        let page = records::query(&q).map_err(|e| HostError {
            code: match e.code {
                types::ErrorCode::Denied => ErrorCode::Denied,
                types::ErrorCode::NotFound => ErrorCode::NotFound,
                types::ErrorCode::Invalid => ErrorCode::Invalid,
                types::ErrorCode::TooLarge => ErrorCode::TooLarge,
                types::ErrorCode::Unavailable => ErrorCode::Unavailable,
                types::ErrorCode::Internal => ErrorCode::Internal,
            },
            message: e.message,
        })?;
        Ok(Page {
            records: page
                .records
                .into_iter()
                .map(|r| Record {
                    id: r.id,
                    author: r.author,
                    collection: r.collection,
                    key: r.key,
                    region: r.region,
                    created_at: r.created_at,
                    deleted: r.deleted,
                    body_json: r.body_json,
                })
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    fn now_ms(&self) -> u64 {
        clock::now_ms()
    }

    fn log(&self, level: Level, message: &str) {
        let level = match level {
            Level::Warn => log::Level::Warn,
            Level::Debug => log::Level::Debug,
        };
        log::log(level, message);
    }
}

/// The exports.
struct Events;

impl Guest for Events {
    fn handle(request: Request) -> Response {
        let request = crate::host::Request {
            method: request.method,
            path: request.path,
            query: request.query,
        };
        let response = crate::service::handle(&Imports, &request);
        Response {
            status: response.status,
            headers: response.headers,
            body: response.body,
        }
    }

    /// Nothing to do: every request reads the records afresh.
    fn on_record(_rec: StoredRecord) {}

    /// Nothing to do.
    fn tick() {}
}

export!(Events);
