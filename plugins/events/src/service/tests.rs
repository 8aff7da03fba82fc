use std::cell::{Cell, RefCell};

use serde_json::Value;

use super::*;
use crate::host::{Page, Record};

const NOW: u64 = 1_763_978_400_000; // 2025-11-24T10:00:00Z
const HOUR: u64 = 3_600_000;

/// Records in memory, newest first, served in pages like the node does.
struct FakeHost {
    records: Vec<Record>,
    deny: Option<ErrorCode>,
    queries: RefCell<Vec<Query>>,
    logs: RefCell<Vec<String>>,
    page_cap: Cell<usize>,
}

impl FakeHost {
    fn new(records: Vec<Record>) -> Self {
        Self {
            records,
            deny: None,
            queries: RefCell::default(),
            logs: RefCell::default(),
            page_cap: Cell::new(usize::MAX),
        }
    }
}

impl Host for FakeHost {
    fn query(&self, query: &Query) -> Result<Page, HostError> {
        self.queries.borrow_mut().push(query.clone());
        if let Some(code) = self.deny {
            return Err(HostError {
                code,
                message: "no grant".into(),
            });
        }
        let matching: Vec<&Record> = self
            .records
            .iter()
            .filter(|r| {
                r.collection == query.collection
                    && r.region.starts_with(&query.region)
                    && !r.deleted
            })
            .collect();
        let start: usize = query
            .cursor
            .as_deref()
            .map_or(0, |c| c.parse().expect("cursor"));
        let size = (query.limit as usize).min(self.page_cap.get());
        let end = (start + size).min(matching.len());
        Ok(Page {
            records: matching[start..end].iter().map(|r| (*r).clone()).collect(),
            next_cursor: (end < matching.len()).then(|| end.to_string()),
        })
    }

    fn now_ms(&self) -> u64 {
        NOW
    }

    fn log(&self, _level: Level, message: &str) {
        self.logs.borrow_mut().push(message.into());
    }
}

fn event(id: &str, title: &str, starts_at: u64, ends_at: Option<u64>) -> Record {
    let mut body =
        serde_json::json!({ "title": title, "starts_at": starts_at, "place": "Tha Phae Gate" });
    if let Some(end) = ends_at {
        body["ends_at"] = end.into();
    }
    Record {
        id: id.into(),
        author: "did:key:z6MkAuthor".into(),
        collection: COLLECTION.into(),
        key: id.into(),
        region: "w5q6u8g".into(),
        created_at: NOW - 10 * DAY_MS,
        deleted: false,
        body_json: body.to_string(),
    }
}

fn get(host: &FakeHost, url: &str) -> Response {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    handle(
        host,
        &Request {
            method: "GET".into(),
            path: path.into(),
            query: query.into(),
        },
    )
}

fn json(response: &Response) -> Value {
    serde_json::from_slice(&response.body).expect("JSON body")
}

fn ids(response: &Response) -> Vec<String> {
    assert_eq!(
        response.status,
        200,
        "{}",
        String::from_utf8_lossy(&response.body)
    );
    json(response)
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e["id"].as_str().expect("id").to_owned())
        .collect()
}

fn header<'a>(response: &'a Response, name: &str) -> Option<&'a str> {
    response
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn sample() -> FakeHost {
    FakeHost::new(vec![
        event("later", "Concert", NOW + 2 * DAY_MS, None),
        event(
            "past",
            "Yesterday's market",
            NOW - DAY_MS,
            Some(NOW - DAY_MS + 2 * HOUR),
        ),
        event("running", "Fair", NOW - HOUR, Some(NOW + HOUR)),
        event("soon", "Talk", NOW + HOUR, Some(NOW + 2 * HOUR)),
        event("old", "Last month", NOW - 40 * DAY_MS, None),
    ])
}

#[test]
fn lists_upcoming_sorted_by_start() {
    let host = sample();
    let response = get(&host, "/?region=w5q6");
    assert_eq!(header(&response, "content-type"), Some("application/json"));
    assert_eq!(ids(&response), ["running", "soon", "later"]);
    let first = &json(&response)[0];
    assert_eq!(first["title"], "Fair");
    assert_eq!(first["starts_at"], NOW - HOUR);
    assert_eq!(first["ends_at"], NOW + HOUR);
    assert_eq!(first["place"], "Tha Phae Gate");
    let queries = host.queries.borrow();
    assert_eq!(queries[0].region, "w5q6");
    assert_eq!(queries[0].collection, "org.cnode.events");
    assert!(header(&response, "x-events-partial").is_none());
}

#[test]
fn region_is_case_insensitive_and_decoded() {
    assert_eq!(
        ids(&get(&sample(), "/?region=W5Q6")),
        ["running", "soon", "later"]
    );
    assert_eq!(
        ids(&get(&sample(), "/?other=1&region=%77%35q6")),
        ["running", "soon", "later"]
    );
    assert_eq!(ids(&get(&sample(), "/?region=u33d")), Vec::<String>::new());
}

#[test]
fn limit() {
    assert_eq!(
        ids(&get(&sample(), "/?region=w5q6&limit=2")),
        ["running", "soon"]
    );
    for bad in ["0", "501", "-1", "two", ""] {
        let response = get(&sample(), &format!("/?region=w5q6&limit={bad}"));
        assert_eq!(response.status, 400, "{bad}");
        assert!(
            json(&response)["error"]
                .as_str()
                .expect("error")
                .contains("limit")
        );
    }
}

#[test]
fn bad_regions_are_400() {
    let cases = [
        ("/", "region is required"),
        ("/?region=", "is not a region"),
        ("/?region=w5q", "is not a region"),
        ("/?region=w5q6u", "is not a region"),
        ("/?region=w5qa", "is not a region"),
        ("/calendar.ics", "region is required"),
        ("/day/2025-11-24", "region is required"),
        ("/?region=%zz", "malformed"),
        ("/?region=%e0%a4", "malformed"),
        ("/?region=%+1", "malformed"),
    ];
    for (url, expected) in cases {
        let response = get(&sample(), url);
        assert_eq!(response.status, 400, "{url}");
        let error = json(&response)["error"].as_str().expect("error").to_owned();
        assert!(error.contains(expected), "{url}: {error}");
    }
    // A hostile value is not echoed in full.
    let long = "x".repeat(5000);
    let response = get(&sample(), &format!("/?region={long}"));
    assert!(response.body.len() < 300);
}

#[test]
fn one_day() {
    let host = sample();
    // NOW is 2025-11-24T10:00Z: "running", "soon" that day, "later" on the 26th.
    assert_eq!(
        ids(&get(&host, "/day/2025-11-24?region=w5q6")),
        ["running", "soon"]
    );
    assert_eq!(ids(&get(&host, "/day/2025-11-26?region=w5q6")), ["later"]);
    assert_eq!(ids(&get(&host, "/day/2025-11-23?region=w5q6")), ["past"]);
    assert_eq!(
        ids(&get(&host, "/day/2025-11-25?region=w5q6")),
        Vec::<String>::new()
    );
    for (url, expected) in [
        ("/day/2025-13-01?region=w5q6", "not a calendar date"),
        ("/day/24-11-2025?region=w5q6", "YYYY-MM-DD"),
        ("/day/?region=w5q6", "YYYY-MM-DD"),
        ("/day?region=w5q6", "YYYY-MM-DD"),
        ("/day/2025-11-24/x?region=w5q6", "YYYY-MM-DD"),
    ] {
        let response = get(&host, url);
        assert_eq!(response.status, 400, "{url}");
        assert!(
            json(&response)["error"]
                .as_str()
                .expect("error")
                .contains(expected),
            "{url}"
        );
    }
}

#[test]
fn calendar_export() {
    let host = sample();
    let response = get(&host, "/calendar.ics?region=w5q6");
    assert_eq!(response.status, 200);
    assert_eq!(
        header(&response, "content-type"),
        Some("text/calendar; charset=utf-8")
    );
    assert_eq!(
        header(&response, "content-disposition"),
        Some("inline; filename=\"events-w5q6.ics\"")
    );
    let text = String::from_utf8(response.body).expect("utf-8");
    // Ended within 30 days ("past") stays; 40 days ago ("old") does not.
    let uids: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("UID:"))
        .map(str::trim_end)
        .collect();
    assert_eq!(
        uids,
        ["past@cnode", "running@cnode", "soon@cnode", "later@cnode"]
    );
    assert!(
        text.contains("DTSTART:20251124T090000Z\r\nDTEND:20251124T110000Z\r\nSUMMARY:Fair\r\n")
    );
}

#[test]
fn other_paths_and_methods() {
    let host = sample();
    let response = get(&host, "/nope?region=w5q6");
    assert_eq!(response.status, 404);
    let post = handle(
        &host,
        &Request {
            method: "POST".into(),
            path: "/".into(),
            query: "region=w5q6".into(),
        },
    );
    assert_eq!(post.status, 405);
    assert_eq!(header(&post, "allow"), Some("GET, HEAD"));
    let head = handle(
        &host,
        &Request {
            method: "HEAD".into(),
            path: "/".into(),
            query: "region=w5q6".into(),
        },
    );
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
}

#[test]
fn host_errors() {
    for (code, status) in [
        (ErrorCode::Denied, 403),
        (ErrorCode::Unavailable, 503),
        (ErrorCode::Internal, 500),
    ] {
        let mut host = sample();
        host.deny = Some(code);
        let response = get(&host, "/?region=w5q6");
        assert_eq!(response.status, status, "{code:?}");
        assert!(
            json(&response)["error"]
                .as_str()
                .expect("error")
                .contains("no grant")
        );
    }
}

#[test]
fn pages_slots_and_junk() {
    let mut records = Vec::new();
    for i in 0..1200 {
        records.push(event(&format!("e{i:04}"), "Event", NOW + i * HOUR, None));
    }
    // A newer record in the same slot hides the older one (newest first).
    let mut newer = event("e0000-v2", "Moved", NOW + 5 * DAY_MS, None);
    newer.key = "e0000".into();
    records.insert(0, newer);
    let mut junk = event("junk", "x", NOW, None);
    junk.body_json = "{\"title\": 5}".into();
    records.insert(1, junk);
    let host = FakeHost::new(records);
    host.page_cap.set(300);
    let all = ids(&get(&host, "/?region=w5q6&limit=500"));
    assert_eq!(all.len(), 500);
    assert_eq!(all[0], "e0001");
    assert!(all.contains(&"e0000-v2".to_owned()));
    assert!(!all.contains(&"e0000".to_owned()));
    assert_eq!(
        host.queries.borrow().len(),
        5,
        "1202 records in pages of 300"
    );
    let logs = host.logs.borrow();
    assert_eq!(logs.len(), 1);
    assert!(
        logs[0].contains("skipped 1 records") && logs[0].contains("junk"),
        "{logs:?}"
    );
}

#[test]
fn scan_stops_at_its_bound() {
    let records = (0..(MAX_SCANNED as u64 + 600))
        .map(|i| event(&format!("e{i}"), "E", NOW + i, None))
        .collect();
    let host = FakeHost::new(records);
    let response = get(&host, "/?region=w5q6&limit=1");
    assert_eq!(response.status, 200);
    assert_eq!(header(&response, "x-events-partial"), Some("true"));
    assert_eq!(
        host.queries.borrow().len(),
        MAX_SCANNED / PAGE_SIZE as usize
    );
    assert!(host.logs.borrow()[0].contains("partial"));
}
