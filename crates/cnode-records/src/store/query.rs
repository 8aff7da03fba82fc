//! Queries over the records store: validation, the choice of how to find the
//! rows, the SQL, and keyset pagination.
//!
//! Five ways to find candidates, all in result order:
//!
//! - walk: newest first along `records_region` (with a region) or
//!   `records_created`, stopping as soon as a page is full — best when the
//!   filters let many rows through;
//! - geo walk: `records_geo` orders each ~1 km cell (6-character geohash)
//!   by time, so a small circle's cells are walked newest-first side by side
//!   and merged, stopping when the page is full — the usual radius query;
//! - geo: range scans of `records_geo` over the circle's geohash cover, then
//!   a top-N sort — for circles too large to walk cell by cell, when few
//!   records lie in them;
//! - text: the FTS5 trigram index, then a top-N sort (or bm25 order) — best
//!   when few records contain the words;
//! - author: the author's records by `records_slot`, then a top-N sort —
//!   best when the author has few records.
//!
//! `records_region` and `records_geo` cover the time, expiry, tombstone and
//! bounding-box checks, so walk, geo walk and geo read a row only for the filters that
//! need it (collection, author, words), one candidate at a time in result
//! order, and stop when the page is full. The exact distance is checked in
//! Rust. Geo, text and author are used when a bounded count on their index
//! says the candidate set is small; otherwise geo walk for a small circle
//! and walk for the rest.

use cnode_identity::Did;
use cnode_types::RegionId;
use rusqlite::{Connection, OptionalExtension, params_from_iter, types::Value};

use std::collections::{BinaryHeap, VecDeque};

use super::{RecordStoreError, StoredRecord, author_key, clamp_i64, stored};

mod plan;
use crate::{
    geo::{self, Area, GeoError, WALK_SHIFT},
    record::RecordId,
};
pub(super) use plan::Plan;

/// Page size when none is given.
pub const DEFAULT_LIMIT: u32 = 50;
/// The largest page.
pub const MAX_LIMIT: u32 = 500;
/// The longest search text, characters.
pub const MAX_QUERY_TEXT: usize = 256;
/// The most words in a search text.
pub const MAX_QUERY_TERMS: usize = 16;

/// Above this many candidates in the circle (counted on the index, up to
/// this bound) the geo index is not worth a sort and the newest-first walk is
/// used. The walk reads about `limit · N / n` index entries to find a page
/// among `N` with `n` in the circle, the geo scan `n`: they cross near
/// `n = √(limit · N)`, about 7,000 for a page of 50 among a million.
const SELECTIVE_GEO: i64 = 16_000;

/// The same bound for the text index (each candidate costs a row read).
const SELECTIVE_TEXT: i64 = 4_000;

/// A candidate set this cheap (in row reads) is taken without counting the
/// other index.
const CHEAP: i64 = 256;

/// The most cells a geo walk merges (a circle of about 2.5 km radius at
/// mid latitudes); larger circles are found by geo or walk.
const MAX_WALK_CELLS: usize = 64;

/// The largest batch one cell of a geo walk reads at a time.
const MAX_WALK_BATCH: usize = 1024;

/// How many covering-index entries cost about one row read.
const GEO_ENTRIES_PER_ROW: i64 = 8;

/// The most trigrams looked up in the index per query (the rest of the text
/// is still checked exactly).
const MAX_TRIGRAMS: usize = 24;

/// Statements differ by which filters a query has; keep them all prepared.
const STATEMENT_CACHE: usize = 128;

/// A circle to search in.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Near {
    /// Latitude of the centre, degrees.
    pub lat: f64,
    /// Longitude of the centre, degrees.
    pub lon: f64,
    /// Radius, metres (at most [`geo::MAX_RADIUS_M`]).
    pub radius_m: f64,
}

/// The order of a query's results.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Order {
    /// Newest first: descending `(created_at, id)`.
    #[default]
    Newest,
    /// Best text match first (FTS5 bm25), then newest. Needs
    /// [`Query::text`]; if every word is shorter than three characters the
    /// trigram index cannot rank and the order is [`Order::Newest`].
    Relevance,
}

/// What to look for. All filters given must hold.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// Only records of this region.
    pub region: Option<RegionId>,
    /// Only records whose position is within this circle.
    pub near: Option<Near>,
    /// Only records whose body's string values contain every
    /// whitespace-separated word of this text (case-insensitive substring).
    pub text: Option<String>,
    /// Only records of this collection.
    pub collection: Option<String>,
    /// Only records of this author.
    pub author: Option<Did>,
    /// Only records with `created_at >= since_ms`.
    pub since_ms: Option<u64>,
    /// Only records with `created_at < until_ms`.
    pub until_ms: Option<u64>,
    /// Page size: 0 means [`DEFAULT_LIMIT`], more than [`MAX_LIMIT`] means
    /// [`MAX_LIMIT`].
    pub limit: u32,
    /// Where to continue: the `next_cursor` of the previous page of the same
    /// query.
    pub cursor: Option<String>,
    /// The order of results.
    pub order: Order,
    /// Include tombstones.
    pub include_deleted: bool,
}

impl Default for Query {
    fn default() -> Self {
        Self {
            region: None,
            near: None,
            text: None,
            collection: None,
            author: None,
            since_ms: None,
            until_ms: None,
            limit: DEFAULT_LIMIT,
            cursor: None,
            order: Order::Newest,
            include_deleted: false,
        }
    }
}

/// One page of results.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryPage {
    /// The records, in the query's order.
    pub records: Vec<StoredRecord>,
    /// Pass as [`Query::cursor`] for the next page; `None` on the last.
    pub next_cursor: Option<String>,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueryError {
    /// The circle is not a valid one.
    #[error("near: {0}")]
    Near(#[from] GeoError),
    /// The search text is too long.
    #[error("search text is {0} characters, the limit is {MAX_QUERY_TEXT}")]
    TextTooLong(usize),
    /// The search text has too many words.
    #[error("search text has {0} words, the limit is {MAX_QUERY_TERMS}")]
    TooManyTerms(usize),
    /// [`Order::Relevance`] without search text.
    #[error("relevance order needs search text")]
    RelevanceWithoutText,
    /// The cursor was not made by this store for this order.
    #[error("the cursor is not one a previous page of this query returned")]
    BadCursor,
}

/// A position in the result order: the last record of a page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Cursor {
    Newest {
        created_at: i64,
        id: [u8; 32],
    },
    Relevance {
        score: f64,
        created_at: i64,
        id: [u8; 32],
    },
}

impl Cursor {
    fn encode(&self) -> String {
        match self {
            Cursor::Newest { created_at, id } => format!("n.{created_at}.{}", hex::encode(id)),
            Cursor::Relevance {
                score,
                created_at,
                id,
            } => format!(
                "r.{:016x}.{created_at}.{}",
                score.to_bits(),
                hex::encode(id)
            ),
        }
    }

    fn decode(s: &str) -> Option<Self> {
        let parts: Vec<&str> = s.split('.').collect();
        let id = |h: &str| {
            let mut id = [0u8; 32];
            hex::decode_to_slice(h, &mut id).ok().map(|()| id)
        };
        match parts.as_slice() {
            ["n", c, i] => Some(Cursor::Newest {
                created_at: c.parse().ok()?,
                id: id(i)?,
            }),
            ["r", s, c, i] => Some(Cursor::Relevance {
                score: f64::from_bits(u64::from_str_radix(s, 16).ok()?),
                created_at: c.parse().ok()?,
                id: id(i)?,
            }),
            _ => None,
        }
    }
}

/// How candidates are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Strategy {
    Walk,
    GeoWalk,
    Geo,
    Text,
    Author,
}
