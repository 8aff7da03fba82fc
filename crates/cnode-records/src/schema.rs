//! The built-in collections and the shape their bodies must have.
//!
//! Three collections ship with every node: [`EVENTS`], [`LISTINGS`] and
//! [`NOTICES`]. Their schemas are strict — an unknown field is a violation —
//! and written as plain Rust checks over the JSON data model, so the error
//! always names the offending field. Bodies of other collections are only held
//! to the generic limits of [`crate::validate`].
//!
//! Tombstones are not checked against a schema: their body must be `null` or
//! `{}` ([`check_tombstone_body`]).

use cnode_types::BlobHash;
use serde_json::{Map, Value};

/// Events: something that happens at a place and a time.
pub const EVENTS: &str = "org.cnode.events";
/// Listings: something offered for a price.
pub const LISTINGS: &str = "org.cnode.listings";
/// Notices: a short public text.
pub const NOTICES: &str = "org.cnode.notices";

/// The collections with a built-in schema.
pub const BUILT_IN: [&str; 3] = [EVENTS, LISTINGS, NOTICES];

/// The field name used when the problem is with the body as a whole.
pub const WHOLE_BODY: &str = "(body)";

/// Longest title of any built-in collection, in characters.
pub const MAX_TITLE_CHARS: usize = 200;
/// Longest free text (`description`, a notice's `body`), in characters.
pub const MAX_TEXT_CHARS: usize = 8000;
/// Longest event place name, in characters.
pub const MAX_PLACE_CHARS: usize = 200;
/// Longest URL, in characters.
pub const MAX_URL_CHARS: usize = 2000;
/// Longest listing contact, in characters.
pub const MAX_CONTACT_CHARS: usize = 500;
/// Most images on one listing.
pub const MAX_LISTING_IMAGES: usize = 10;

/// Field names are echoed in errors; an attacker's field name is cut to this.
const MAX_FIELD_NAME_IN_ERROR: usize = 64;

/// A body that does not fit its collection's schema.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field {field}: {problem}")]
pub struct SchemaError {
    /// The offending field (`images[2]` for an array element,
    /// [`WHOLE_BODY`] for the body itself).
    pub field: String,
    /// What is wrong with it.
    pub problem: Problem,
}

/// What is wrong with a field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    /// A required field is absent.
    #[error("required field is missing")]
    Missing,
    /// The schema has no such field.
    #[error("unknown field")]
    Unknown,
    /// The value has the wrong JSON type.
    #[error("expected {0}")]
    WrongType(&'static str),
    /// A string that must have content is empty or only whitespace.
    #[error("must not be empty")]
    Empty,
    /// A string longer than allowed.
    #[error("longer than {max} characters")]
    TooLong {
        /// The limit, in characters (Unicode scalar values).
        max: usize,
    },
    /// An array with too many elements.
    #[error("more than {max} elements")]
    TooMany {
        /// The limit.
        max: usize,
    },
    /// A value outside its range or format.
    #[error("{0}")]
    Invalid(&'static str),
}

impl SchemaError {
    fn new(field: &str, problem: Problem) -> Self {
        let field = if field.chars().count() > MAX_FIELD_NAME_IN_ERROR {
            let mut cut: String = field.chars().take(MAX_FIELD_NAME_IN_ERROR).collect();
            cut.push('…');
            cut
        } else {
            field.to_owned()
        };
        Self { field, problem }
    }
}

/// Whether `collection` has a built-in schema.
pub fn is_built_in(collection: &str) -> bool {
    BUILT_IN.contains(&collection)
}

/// Checks a (non-tombstone) body against its collection's schema. Bodies of
/// collections without a built-in schema pass.
pub fn check_body(collection: &str, body: &Value) -> Result<(), SchemaError> {
    match collection {
        EVENTS => check_event(object(body)?),
        LISTINGS => check_listing(object(body)?),
        NOTICES => check_notice(object(body)?),
        _ => Ok(()),
    }
}

/// Checks a tombstone's body: `null` or the empty object, whatever the
/// collection (a deletion carries no content).
pub fn check_tombstone_body(body: &Value) -> Result<(), SchemaError> {
    match body {
        Value::Null => Ok(()),
        Value::Object(map) if map.is_empty() => Ok(()),
        _ => Err(SchemaError::new(
            WHOLE_BODY,
            Problem::Invalid("a tombstone's body must be null or {}"),
        )),
    }
}

fn check_event(body: &Map<String, Value>) -> Result<(), SchemaError> {
    only_fields(
        body,
        &[
            "title",
            "starts_at",
            "ends_at",
            "place",
            "description",
            "url",
            "image",
        ],
    )?;
    title(body)?;
    let starts_at = millis(body, "starts_at")?.ok_or_else(|| missing("starts_at"))?;
    if let Some(ends_at) = millis(body, "ends_at")?
        && ends_at < starts_at
    {
        return Err(SchemaError::new(
            "ends_at",
            Problem::Invalid("must not be before starts_at"),
        ));
    }
    text(body, "place", MAX_PLACE_CHARS)?.ok_or_else(|| missing("place"))?;
    text(body, "description", MAX_TEXT_CHARS)?;
    if let Some(url) = text(body, "url", MAX_URL_CHARS)? {
        check_url(url)?;
    }
    if let Some(image) = body.get("image") {
        blob_cid("image", image)?;
    }
    Ok(())
}

fn check_listing(body: &Map<String, Value>) -> Result<(), SchemaError> {
    only_fields(
        body,
        &[
            "title",
            "price",
            "currency",
            "description",
            "contact",
            "images",
        ],
    )?;
    title(body)?;
    let price = body.get("price").ok_or_else(|| missing("price"))?;
    let price = price
        .as_f64()
        .ok_or_else(|| SchemaError::new("price", Problem::WrongType("a number")))?;
    // serde_json numbers are always finite (no NaN to slip past this).
    if price < 0.0 {
        return Err(SchemaError::new(
            "price",
            Problem::Invalid("must not be negative"),
        ));
    }
    let currency = text(body, "currency", 3)?.ok_or_else(|| missing("currency"))?;
    if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(SchemaError::new(
            "currency",
            Problem::Invalid("must be 3 upper-case letters (ISO 4217, e.g. THB)"),
        ));
    }
    text(body, "description", MAX_TEXT_CHARS)?;
    text(body, "contact", MAX_CONTACT_CHARS)?.ok_or_else(|| missing("contact"))?;
    if let Some(images) = body.get("images") {
        let images = images
            .as_array()
            .ok_or_else(|| SchemaError::new("images", Problem::WrongType("an array")))?;
        if images.len() > MAX_LISTING_IMAGES {
            return Err(SchemaError::new(
                "images",
                Problem::TooMany {
                    max: MAX_LISTING_IMAGES,
                },
            ));
        }
        for (i, image) in images.iter().enumerate() {
            blob_cid(&format!("images[{i}]"), image)?;
        }
    }
    Ok(())
}

fn check_notice(body: &Map<String, Value>) -> Result<(), SchemaError> {
    only_fields(body, &["title", "body"])?;
    title(body)?;
    text(body, "body", MAX_TEXT_CHARS)?.ok_or_else(|| missing("body"))?;
    Ok(())
}

fn object(body: &Value) -> Result<&Map<String, Value>, SchemaError> {
    body.as_object()
        .ok_or_else(|| SchemaError::new(WHOLE_BODY, Problem::WrongType("an object")))
}

fn only_fields(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), SchemaError> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(unknown) => Err(SchemaError::new(unknown, Problem::Unknown)),
        None => Ok(()),
    }
}

fn missing(field: &str) -> SchemaError {
    SchemaError::new(field, Problem::Missing)
}

/// The required `title`: 1..=200 characters, not only whitespace.
fn title(body: &Map<String, Value>) -> Result<(), SchemaError> {
    let title = text(body, "title", MAX_TITLE_CHARS)?.ok_or_else(|| missing("title"))?;
    if title.trim().is_empty() {
        return Err(SchemaError::new("title", Problem::Empty));
    }
    Ok(())
}

/// An optional string field of at most `max` characters.
fn text<'a>(
    body: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<Option<&'a str>, SchemaError> {
    let Some(value) = body.get(field) else {
        return Ok(None);
    };
    let s = value
        .as_str()
        .ok_or_else(|| SchemaError::new(field, Problem::WrongType("a string")))?;
    // Counting stops early: a 64 KiB string is not walked to the end.
    if s.chars().nth(max).is_some() {
        return Err(SchemaError::new(field, Problem::TooLong { max }));
    }
    Ok(Some(s))
}

/// An optional timestamp: a non-negative integer, ms since the Unix epoch.
fn millis(body: &Map<String, Value>, field: &str) -> Result<Option<u64>, SchemaError> {
    let Some(value) = body.get(field) else {
        return Ok(None);
    };
    value.as_u64().map(Some).ok_or_else(|| {
        SchemaError::new(
            field,
            Problem::WrongType("a non-negative integer (ms since the Unix epoch)"),
        )
    })
}

fn check_url(url: &str) -> Result<(), SchemaError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    match rest {
        Some(rest)
            if !rest.is_empty() && !rest.chars().any(|c| c.is_whitespace() || c.is_control()) =>
        {
            Ok(())
        }
        _ => Err(SchemaError::new(
            "url",
            Problem::Invalid("must be an http:// or https:// URL without spaces"),
        )),
    }
}

fn blob_cid(field: &str, value: &Value) -> Result<(), SchemaError> {
    let s = value
        .as_str()
        .ok_or_else(|| SchemaError::new(field, Problem::WrongType("a blob id (string)")))?;
    // A CID is ~60 characters; do not hand a huge string to the parser.
    if s.len() > 128 || s.parse::<BlobHash>().is_err() {
        return Err(SchemaError::new(
            field,
            Problem::Invalid("not a blob id (bafkr4… CID)"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const CID: &str = "bafkr4ifpcne3t5pzugtkaqcn5i3nzskjtpfslsnnyejlpte2spfoihzsmi";

    fn err(collection: &str, body: Value) -> SchemaError {
        check_body(collection, &body).expect_err("body should be refused")
    }

    fn event() -> Value {
        json!({
            "title": "ตลาดนัดวันอาทิตย์",
            "starts_at": 1_764_000_000_000u64,
            "ends_at": 1_764_010_000_000u64,
            "place": "Tha Phae Gate",
            "description": "Sunday walking street",
            "url": "https://example.org/market",
            "image": CID,
        })
    }

    fn listing() -> Value {
        json!({
            "title": "Bicycle",
            "price": 1500.5,
            "currency": "THB",
            "description": "Blue, 21 gears",
            "contact": "Line: @bike",
            "images": [CID, CID],
        })
    }

    #[test]
    fn valid_bodies_pass() {
        check_body(EVENTS, &event()).expect("full event");
        check_body(EVENTS, &json!({"title": "x", "starts_at": 0, "place": ""}))
            .expect("minimal event");
        check_body(LISTINGS, &listing()).expect("full listing");
        check_body(
            LISTINGS,
            &json!({"title": "x", "price": 0, "currency": "EUR", "contact": "a"}),
        )
        .expect("minimal listing");
        check_body(
            NOTICES,
            &json!({"title": "Water cut", "body": "Tuesday 9–12"}),
        )
        .expect("notice");
        check_body("com.example.anything", &json!([1, "two", {"three": null}]))
            .expect("unknown collection");
        check_body("com.example.anything", &Value::Null).expect("unknown collection");
    }

    #[test]
    fn unknown_and_missing_fields_are_named() {
        let mut body = event();
        body["price"] = json!(1);
        assert_eq!(
            err(EVENTS, body),
            SchemaError {
                field: "price".into(),
                problem: Problem::Unknown
            }
        );
        for field in ["title", "starts_at", "place"] {
            let mut body = event();
            body.as_object_mut().expect("object").remove(field);
            assert_eq!(err(EVENTS, body).field, field);
        }
        for field in ["title", "price", "currency", "contact"] {
            let mut body = listing();
            body.as_object_mut().expect("object").remove(field);
            let e = err(LISTINGS, body);
            assert_eq!((e.field.as_str(), e.problem), (field, Problem::Missing));
        }
        let e = err(NOTICES, json!({"title": "t"}));
        assert_eq!((e.field.as_str(), e.problem), ("body", Problem::Missing));
        let long = "x".repeat(1000);
        let e = err(NOTICES, json!({"title": "t", "body": "b", long.clone(): 1}));
        assert_eq!(e.problem, Problem::Unknown);
        assert!(e.field.chars().count() <= MAX_FIELD_NAME_IN_ERROR + 1);
    }

    #[test]
    fn wrong_types_and_ranges_are_refused() {
        assert_eq!(err(EVENTS, json!("text")).field, WHOLE_BODY);
        assert_eq!(err(NOTICES, json!([])).field, WHOLE_BODY);
        let cases: Vec<(&str, Value, &str, &str)> = vec![
            (EVENTS, json!("   "), "title", "empty"),
            (EVENTS, json!("x".repeat(201)), "title", "too long"),
            (EVENTS, json!(7), "title", "type"),
            (EVENTS, json!("x".repeat(200)), "title", "ok"),
        ];
        for (collection, value, field, what) in cases {
            let mut body = event();
            body[field] = value;
            let result = check_body(collection, &body);
            assert_eq!(result.is_ok(), what == "ok", "{field} {what}: {result:?}");
        }
        // Thai characters count as one each, not by their UTF-8 bytes.
        let mut body = event();
        body["title"] = json!("ก".repeat(200));
        check_body(EVENTS, &body).expect("200 Thai characters");

        let mut body = event();
        body["ends_at"] = json!(1_763_000_000_000u64);
        assert_eq!(err(EVENTS, body).field, "ends_at");
        let mut body = event();
        body["starts_at"] = json!(-5);
        assert_eq!(err(EVENTS, body).field, "starts_at");
        let mut body = event();
        body["starts_at"] = json!(1.5);
        assert_eq!(err(EVENTS, body).field, "starts_at");
        for url in ["ftp://x", "https://", "javascript:alert(1)", "https://a b"] {
            let mut body = event();
            body["url"] = json!(url);
            assert_eq!(err(EVENTS, body).field, "url", "{url}");
        }
        let mut body = event();
        body["url"] = json!(format!("https://{}", "a".repeat(1993)));
        assert_eq!(err(EVENTS, body).problem, Problem::TooLong { max: 2000 });
        let mut body = event();
        body["description"] = json!("d".repeat(8001));
        assert_eq!(err(EVENTS, body).field, "description");
        let mut body = event();
        body["image"] = json!("bafy-not-a-blob");
        assert_eq!(err(EVENTS, body).field, "image");

        let mut body = listing();
        body["price"] = json!(-1);
        assert_eq!(err(LISTINGS, body).field, "price");
        let mut body = listing();
        body["price"] = json!("12");
        assert_eq!(err(LISTINGS, body).field, "price");
        for currency in ["thb", "TH", "THBB", "T1B", "ÄBC"] {
            let mut body = listing();
            body["currency"] = json!(currency);
            assert_eq!(err(LISTINGS, body).field, "currency", "{currency}");
        }
        let mut body = listing();
        body["contact"] = json!("c".repeat(501));
        assert_eq!(err(LISTINGS, body).field, "contact");
        let mut body = listing();
        body["images"] = json!(vec![CID; 11]);
        assert_eq!(
            err(LISTINGS, body).problem,
            Problem::TooMany {
                max: MAX_LISTING_IMAGES
            }
        );
        let mut body = listing();
        body["images"] = json!([CID, "nope"]);
        assert_eq!(err(LISTINGS, body).field, "images[1]");
        let mut body = listing();
        body["images"] = json!(CID);
        assert_eq!(err(LISTINGS, body).field, "images");
    }

    #[test]
    fn tombstone_bodies() {
        check_tombstone_body(&Value::Null).expect("null");
        check_tombstone_body(&json!({})).expect("{}");
        for body in [json!({"title": "x"}), json!([]), json!(""), json!(0)] {
            assert_eq!(
                check_tombstone_body(&body).expect_err("refused").field,
                WHOLE_BODY
            );
        }
    }

    #[test]
    fn errors_read_well() {
        let e = err(
            LISTINGS,
            json!({"title": "x", "price": 1, "currency": "thb", "contact": ""}),
        );
        assert_eq!(
            e.to_string(),
            "field currency: must be 3 upper-case letters (ISO 4217, e.g. THB)"
        );
    }
}
