//! Events as the plugin sees them: an `org.cnode.events` record's body
//! with the record's id, author and place, and the rules for which events
//! a view shows and in what order.

use serde::{Deserialize, Serialize};

use crate::{host::Record, time::DAY_MS};

/// The collection the plugin reads.
pub const COLLECTION: &str = "org.cnode.events";

/// An `org.cnode.events` body (the schema in
/// `crates/cnode-records/src/schema.rs`; the node refuses bodies that do
/// not fit it, so this only picks out the fields).
#[derive(Debug, Deserialize)]
struct Body {
    title: String,
    starts_at: u64,
    #[serde(default)]
    ends_at: Option<u64>,
    #[serde(default)]
    place: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    image: Option<String>,
}

/// One event, as served in the JSON list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Event {
    /// The record id.
    pub id: String,
    /// The author's DID.
    pub author: String,
    /// The record's geohash (its first 4 characters are the region).
    pub geohash: String,
    /// When the record was made, ms since the Unix epoch.
    pub created_at: u64,
    /// The event's title.
    pub title: String,
    /// When it starts, ms since the Unix epoch (UTC).
    pub starts_at: u64,
    /// When it ends, if the author said.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<u64>,
    /// Where (a place name; may be empty).
    pub place: String,
    /// Free text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// A link.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// A blob id of an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
}

impl Event {
    /// The event in `record`, or why it is not one (a tombstone, another
    /// collection, a body that does not parse).
    pub fn from_record(record: &Record) -> Result<Self, String> {
        if record.collection != COLLECTION {
            return Err(format!(
                "record {} is in {}, not {COLLECTION}",
                record.id, record.collection
            ));
        }
        if record.deleted {
            return Err(format!("record {} is a tombstone", record.id));
        }
        let body: Body = serde_json::from_str(&record.body_json)
            .map_err(|e| format!("record {}: not an event body: {e}", record.id))?;
        Ok(Self {
            id: record.id.clone(),
            author: record.author.clone(),
            geohash: record.region.clone(),
            created_at: record.created_at,
            title: body.title,
            starts_at: body.starts_at,
            // The schema refuses ends_at < starts_at; a record from a looser
            // node is read as having no end.
            ends_at: body.ends_at.filter(|&end| end >= body.starts_at),
            place: body.place,
            description: body.description,
            url: body.url,
            image: body.image,
        })
    }

    /// The end of the event's span `[starts_at, end)`: `ends_at`, and an
    /// event without a length counts as lasting 1 ms so it still falls on
    /// its day.
    fn span_end(&self) -> u64 {
        self.ends_at
            .unwrap_or(self.starts_at)
            .max(self.starts_at.saturating_add(1))
    }

    /// Whether any of the event lies in `[from, until)`.
    pub fn overlaps(&self, from: u64, until: u64) -> bool {
        self.starts_at < until && self.span_end() > from
    }

    /// Whether the event has not ended at `now` (an event under way counts).
    pub fn is_upcoming(&self, now: u64) -> bool {
        self.span_end() > now
    }

    /// Whether the event touches the UTC day starting at `day_start`.
    pub fn is_on_day(&self, day_start: u64) -> bool {
        self.overlaps(day_start, day_start.saturating_add(DAY_MS))
    }
}

/// Orders events by start, then title, then id (a stable order for equal
/// starts, so repeated requests give identical answers).
pub fn sort(events: &mut [Event]) {
    events.sort_by(|a, b| (a.starts_at, &a.title, &a.id).cmp(&(b.starts_at, &b.title, &b.id)));
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn record(id: &str, body: &str) -> Record {
        Record {
            id: id.into(),
            author: "did:key:z6MkAuthor".into(),
            collection: COLLECTION.into(),
            key: format!("key-{id}"),
            region: "w5q6u8g".into(),
            created_at: 1_000,
            deleted: false,
            body_json: body.into(),
        }
    }

    fn event(starts_at: u64, ends_at: Option<u64>) -> Event {
        let body = match ends_at {
            Some(end) => {
                format!(r#"{{"title":"t","starts_at":{starts_at},"ends_at":{end},"place":"p"}}"#)
            }
            None => format!(r#"{{"title":"t","starts_at":{starts_at},"place":"p"}}"#),
        };
        Event::from_record(&record("e", &body)).expect("event")
    }

    #[test]
    fn parses_bodies() {
        let e = Event::from_record(&record(
            "e1",
            r#"{"title":"Market","starts_at":5,"ends_at":9,"place":"Gate","description":"d","url":"https://x.org","image":"bafkr4i"}"#,
        ))
        .expect("full body");
        assert_eq!(
            (e.title.as_str(), e.starts_at, e.ends_at, e.place.as_str()),
            ("Market", 5, Some(9), "Gate")
        );
        assert_eq!(e.url.as_deref(), Some("https://x.org"));
        let e = Event::from_record(&record(
            "e2",
            r#"{"title":"x","starts_at":5,"ends_at":4,"place":""}"#,
        ))
        .expect("end before start");
        assert_eq!(e.ends_at, None);

        for body in [
            "null",
            "{}",
            r#"{"title":"x"}"#,
            r#"{"title":"x","starts_at":-1}"#,
            "not json",
        ] {
            let e = Event::from_record(&record("bad", body)).expect_err(body);
            assert!(e.contains("not an event body"), "{e}");
        }
        let mut tomb = record("t", "null");
        tomb.deleted = true;
        assert!(
            Event::from_record(&tomb)
                .expect_err("tombstone")
                .contains("tombstone")
        );
        let mut other = record("o", r#"{"title":"x","starts_at":1,"place":""}"#);
        other.collection = "org.cnode.notices".into();
        assert!(Event::from_record(&other).is_err());
    }

    #[test]
    fn json_omits_absent_fields() {
        let json = serde_json::to_value(event(5, None)).expect("json");
        assert_eq!(json["starts_at"], 5);
        assert!(json.get("ends_at").is_none());
        assert!(json.get("url").is_none());
        assert_eq!(json["geohash"], "w5q6u8g");
    }

    #[test]
    fn upcoming() {
        let now = 10 * DAY_MS;
        assert!(event(now + 1, None).is_upcoming(now));
        assert!(event(now, None).is_upcoming(now), "starts right now");
        assert!(!event(now - 1, None).is_upcoming(now));
        assert!(
            event(now - DAY_MS, Some(now + 1)).is_upcoming(now),
            "under way"
        );
        assert!(
            !event(now - DAY_MS, Some(now)).is_upcoming(now),
            "ends right now"
        );
    }

    #[test]
    fn days() {
        let day = 20 * DAY_MS;
        assert!(event(day, None).is_on_day(day), "at midnight");
        assert!(event(day + DAY_MS - 1, None).is_on_day(day), "last ms");
        assert!(!event(day + DAY_MS, None).is_on_day(day), "next midnight");
        assert!(!event(day - 1, None).is_on_day(day));
        assert!(
            event(day - 3_600_000, Some(day + 3_600_000)).is_on_day(day),
            "over midnight, into the day"
        );
        assert!(
            event(day - 3_600_000, Some(day + 3_600_000)).is_on_day(day - DAY_MS),
            "and out of the one before"
        );
        assert!(
            !event(day - 3_600_000, Some(day)).is_on_day(day),
            "ends at midnight"
        );
        assert!(
            event(day - DAY_MS, Some(day + 2 * DAY_MS)).is_on_day(day),
            "spans the whole day"
        );
    }

    #[test]
    fn order() {
        let mk = |id: &str, title: &str, start: u64| {
            Event::from_record(&record(
                id,
                &format!(r#"{{"title":"{title}","starts_at":{start},"place":""}}"#),
            ))
            .expect("event")
        };
        let mut events = vec![
            mk("c", "b", 5),
            mk("b", "a", 5),
            mk("a", "z", 1),
            mk("d", "a", 5),
        ];
        sort(&mut events);
        let ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["a", "b", "d", "c"]);
    }
}
