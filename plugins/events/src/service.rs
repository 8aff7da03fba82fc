//! The plugin's routes: reading the request, gathering the region's events
//! through the host, and answering as JSON or iCalendar.
//!
//! | route | answer |
//! |---|---|
//! | `GET /?region=w5q6[&limit=N]` | upcoming events (not yet ended), sorted by start, as a JSON array |
//! | `GET /day/YYYY-MM-DD?region=w5q6[&limit=N]` | events touching that UTC day, sorted by start |
//! | `GET /calendar.ics?region=w5q6` | an iCalendar file: upcoming events and those of the past 30 days |
//!
//! Errors are JSON `{"error": "…"}`: 400 for bad input, 404 for an unknown
//! path, 405 for a method other than GET/HEAD, 403 when the node has not
//! granted `records:read`, 503 when the node cannot query right now.
//!
//! Records are found by region and collection only (the records query
//! filters on creation time, not on an event's start), so each request
//! walks the region's events newest-created first, up to
//! [`MAX_SCANNED`] records; a response that stopped there carries
//! `x-events-partial: true`.

use std::collections::HashSet;

use crate::{
    event::{self, COLLECTION, Event},
    geo,
    host::{ErrorCode, Host, HostError, Level, Query, Request, Response},
    ics,
    time::{self, DAY_MS},
};

/// Records asked for per query page (the host's cap).
const PAGE_SIZE: u32 = 500;
/// The most records one request reads.
pub const MAX_SCANNED: usize = 10_000;
/// Events in a JSON answer when `limit` is not given.
const DEFAULT_LIMIT: usize = 100;
/// The largest `limit`.
const MAX_LIMIT: usize = 500;
/// The most events in a calendar file.
const MAX_CALENDAR_EVENTS: usize = 1000;
/// How far back the calendar keeps ended events, so a subscribed calendar
/// does not lose yesterday's events.
const CALENDAR_PAST_MS: u64 = 30 * DAY_MS;

/// A request the plugin refuses, with its status.
struct Refusal {
    status: u16,
    message: String,
}

fn bad_request(message: impl Into<String>) -> Refusal {
    Refusal {
        status: 400,
        message: message.into(),
    }
}

impl From<Refusal> for Response {
    fn from(r: Refusal) -> Self {
        Response::error(r.status, &r.message)
    }
}

/// Answers one request.
pub fn handle(host: &impl Host, request: &Request) -> Response {
    let head = request.method == "HEAD";
    if request.method != "GET" && !head {
        return Response::error(
            405,
            &format!(
                "{} is not allowed here: the events plugin only reads (GET)",
                request.method
            ),
        )
        .with_header("allow", "GET, HEAD");
    }
    let result = match request.path.as_str() {
        "/" => list(host, &request.query),
        "/calendar.ics" => calendar(host, &request.query),
        path => match path.strip_prefix("/day/") {
            Some(day) => on_day(host, day, &request.query),
            None if path == "/day" => Err(bad_request(
                "expected /day/YYYY-MM-DD (a UTC day, like /day/2025-11-24)",
            )),
            None => Err(Refusal {
                status: 404,
                message:
                    "no such page: the events plugin answers /, /day/YYYY-MM-DD and /calendar.ics"
                        .into(),
            }),
        },
    };
    let mut response = result.unwrap_or_else(Response::from);
    if head {
        response.body.clear();
    }
    response
}

/// `GET /`: upcoming events.
fn list(host: &impl Host, query: &str) -> Result<Response, Refusal> {
    let params = Params::parse(query)?;
    let region = params.region()?;
    let limit = params.limit()?;
    let now = host.now_ms();
    let scan = scan(host, &region)?;
    let mut events: Vec<Event> = scan
        .events
        .into_iter()
        .filter(|e| e.is_upcoming(now))
        .collect();
    event::sort(&mut events);
    events.truncate(limit);
    Ok(partial(Response::json(200, &events), scan.partial))
}

/// `GET /day/YYYY-MM-DD`: the events touching one UTC day.
fn on_day(host: &impl Host, day: &str, query: &str) -> Result<Response, Refusal> {
    let day_start = time::parse_day(day).map_err(|e| bad_request(e.to_string()))?;
    let params = Params::parse(query)?;
    let region = params.region()?;
    let limit = params.limit()?;
    let scan = scan(host, &region)?;
    let mut events: Vec<Event> = scan
        .events
        .into_iter()
        .filter(|e| e.is_on_day(day_start))
        .collect();
    event::sort(&mut events);
    events.truncate(limit);
    Ok(partial(Response::json(200, &events), scan.partial))
}

/// `GET /calendar.ics`: an iCalendar file.
fn calendar(host: &impl Host, query: &str) -> Result<Response, Refusal> {
    let params = Params::parse(query)?;
    let region = params.region()?;
    let since = host.now_ms().saturating_sub(CALENDAR_PAST_MS);
    let scan = scan(host, &region)?;
    let mut events: Vec<Event> = scan
        .events
        .into_iter()
        .filter(|e| e.is_upcoming(since))
        .collect();
    event::sort(&mut events);
    events.truncate(MAX_CALENDAR_EVENTS);
    let body = ics::calendar(&ics::CalendarInfo { region: &region }, &events);
    let response = Response::new(200, "text/calendar; charset=utf-8", body).with_header(
        "content-disposition",
        &format!("inline; filename=\"events-{region}.ics\""),
    );
    Ok(partial(response, scan.partial))
}

fn partial(response: Response, partial: bool) -> Response {
    if partial {
        response.with_header("x-events-partial", "true")
    } else {
        response
    }
}

/// The region's events as read through the host.
struct Scan {
    events: Vec<Event>,
    /// Stopped at [`MAX_SCANNED`] with more pages left.
    partial: bool,
}

/// Reads every event record of `region` (up to [`MAX_SCANNED`]), newest
/// first, keeping the newest record of each (author, key) slot and skipping
/// records that are not events.
fn scan(host: &impl Host, region: &str) -> Result<Scan, Refusal> {
    let mut events = Vec::new();
    let mut slots = HashSet::new();
    let mut scanned = 0;
    let mut skipped = 0;
    let mut first_skip = None;
    let mut cursor = None;
    loop {
        let query = Query {
            region: region.into(),
            collection: COLLECTION.into(),
            limit: PAGE_SIZE,
            cursor,
        };
        let page = host.query(&query).map_err(host_failed)?;
        scanned += page.records.len();
        for record in &page.records {
            if !record.region.starts_with(region)
                || !slots.insert((record.author.clone(), record.key.clone()))
            {
                continue;
            }
            match Event::from_record(record) {
                Ok(event) => events.push(event),
                Err(why) => {
                    skipped += 1;
                    first_skip.get_or_insert(why);
                }
            }
        }
        cursor = page.next_cursor;
        if cursor.is_none() || page.records.is_empty() {
            break;
        }
        if scanned >= MAX_SCANNED {
            host.log(
                Level::Warn,
                &format!(
                    "region {region}: stopped after {scanned} event records; answer is partial"
                ),
            );
            return finish(host, events, true, skipped, first_skip);
        }
    }
    finish(host, events, false, skipped, first_skip)
}

fn finish(
    host: &impl Host,
    events: Vec<Event>,
    partial: bool,
    skipped: usize,
    first_skip: Option<String>,
) -> Result<Scan, Refusal> {
    if let Some(why) = first_skip {
        host.log(
            Level::Warn,
            &format!("skipped {skipped} records that are not events, the first: {why}"),
        );
    }
    Ok(Scan { events, partial })
}

fn host_failed(e: HostError) -> Refusal {
    let (status, message) = match e.code {
        ErrorCode::Denied => (
            403,
            format!(
                "this node does not let the events plugin read {COLLECTION} records here: {}",
                e.message
            ),
        ),
        ErrorCode::Unavailable => (
            503,
            format!("the node cannot look up records right now: {}", e.message),
        ),
        _ => (500, format!("the records query failed: {}", e.message)),
    };
    Refusal { status, message }
}

/// The query string's parameters.
struct Params(Vec<(String, String)>);

impl Params {
    fn parse(query: &str) -> Result<Self, Refusal> {
        let mut pairs = Vec::new();
        for part in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = part.split_once('=').unwrap_or((part, ""));
            pairs.push((percent_decode(name)?, percent_decode(value)?));
        }
        Ok(Self(pairs))
    }

    /// The first value of `name`.
    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// `region`, required: a 4-character geohash (case-insensitive).
    fn region(&self) -> Result<String, Refusal> {
        let Some(region) = self.get("region") else {
            return Err(bad_request(
                "region is required: add ?region= and a 4-character geohash, like ?region=w5q6",
            ));
        };
        let lower = region.trim().to_ascii_lowercase();
        if !geo::is_region(&lower) {
            let shown: String = region.chars().take(20).collect();
            return Err(bad_request(format!(
                "region {shown:?} is not a region: expected a 4-character geohash (digits and b-z without a, i, l, o), like w5q6"
            )));
        }
        Ok(lower)
    }

    /// `limit`, optional: 1 to 500, default 100.
    fn limit(&self) -> Result<usize, Refusal> {
        match self.get("limit") {
            None => Ok(DEFAULT_LIMIT),
            Some(text) => match text.parse::<usize>() {
                Ok(n) if (1..=MAX_LIMIT).contains(&n) => Ok(n),
                _ => Err(bad_request(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))),
            },
        }
    }
}

/// Decodes `application/x-www-form-urlencoded` text: `+` is a space, `%XX`
/// a byte; the result must be UTF-8.
fn percent_decode(text: &str) -> Result<String, Refusal> {
    let malformed = || bad_request("the query string is malformed (a bad %-escape or not UTF-8)");
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).ok_or_else(malformed)?;
                let digit = |b: u8| char::from(b).to_digit(16).ok_or_else(malformed);
                out.push((digit(hex[0])? * 16 + digit(hex[1])?) as u8);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| malformed())
}

#[cfg(test)]
mod tests;
