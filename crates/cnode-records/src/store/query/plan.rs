//! [`Plan`]: a validated query, how it finds its rows (walk, geo walk, geo,
//! text, author), the SQL, and the run that fills a page.

use super::*;

/// A validated query, ready to run on the connection.
#[derive(Debug, Clone)]
pub(in crate::store) struct Plan {
    region: Option<RegionId>,
    near: Option<(Near, Area)>,
    /// The cells a geo walk merges (newest-first order only, small circles).
    walk_cells: Option<Vec<u64>>,
    /// Every word, lowercased (checked with `instr` on the stored text).
    terms: Vec<String>,
    /// FTS5 query: the AND of the words' trigrams, each quoted.
    fts: Option<String>,
    collection: Option<String>,
    author: Option<[u8; 32]>,
    since: Option<i64>,
    until: Option<i64>,
    limit: usize,
    cursor: Option<Cursor>,
    order: Order,
    include_deleted: bool,
    now: i64,
}

/// A row from a candidate query, before the exact distance and the row's own
/// filters.
struct Candidate {
    rid: i64,
    lat: f64,
    lon: f64,
    created_at: i64,
    id: [u8; 32],
    score: f64,
}

impl Candidate {
    fn read(row: &rusqlite::Row<'_>, scored: bool) -> rusqlite::Result<Option<Self>> {
        let Ok(id) = <[u8; 32]>::try_from(row.get_ref(4)?.as_blob()?) else {
            return Ok(None);
        };
        Ok(Some(Self {
            rid: row.get(0)?,
            lat: row.get(1)?,
            lon: row.get(2)?,
            created_at: row.get(3)?,
            id,
            score: if scored { row.get(5)? } else { 0.0 },
        }))
    }
}

/// One cell of a geo walk: the next candidates of the cell, newest first.
struct CellWalk {
    cell: u64,
    buffered: VecDeque<Candidate>,
    /// Where the next batch of this cell starts.
    keyset: Option<Cursor>,
    batch: usize,
    exhausted: bool,
}

/// A candidate row that passed every filter.
struct Hit {
    rid: i64,
    created_at: i64,
    id: [u8; 32],
    score: f64,
    distance_m: Option<f64>,
}

impl Plan {
    /// Whether the query searches text: milliseconds over a large store
    /// (FTS5 plus a check of every candidate), too long to start on an
    /// async worker.
    pub(in crate::store) fn searches_text(&self) -> bool {
        !self.terms.is_empty()
    }

    /// Validates `q`.
    pub(in crate::store) fn new(q: Query, now_ms: u64) -> Result<Self, QueryError> {
        let near = q
            .near
            .map(|n| Area::new(n.lat, n.lon, n.radius_m).map(|a| (n, a)))
            .transpose()?;
        let text = q.text.as_deref().map(str::trim).filter(|t| !t.is_empty());
        let mut terms: Vec<String> = Vec::new();
        if let Some(t) = text {
            let n = t.chars().count();
            if n > MAX_QUERY_TEXT {
                return Err(QueryError::TextTooLong(n));
            }
            for term in t
                .to_lowercase()
                .split(|c: char| c.is_whitespace() || c.is_control())
                .filter(|w| !w.is_empty())
            {
                if !terms.iter().any(|t| t == term) {
                    terms.push(term.to_owned());
                }
            }
            if terms.len() > MAX_QUERY_TERMS {
                return Err(QueryError::TooManyTerms(terms.len()));
            }
        }
        // The trigram table keeps no positions (detail=none: a smaller
        // index, faster inserts), so a word is looked up as the AND of its
        // trigrams — a superset that the `instr` check on the stored text
        // makes exact. Each trigram is quoted with `"` doubled: user text is
        // always a literal to FTS5, never query syntax. Words under three
        // characters have no trigram; `instr` alone checks them.
        let mut grams: Vec<String> = Vec::new();
        for t in &terms {
            let chars: Vec<char> = t.chars().collect();
            for w in chars.windows(3) {
                let g: String = w.iter().collect();
                if grams.len() < MAX_TRIGRAMS && !grams.contains(&g) {
                    grams.push(g);
                }
            }
        }
        let fts = (!grams.is_empty()).then(|| {
            grams
                .iter()
                .map(|g| format!("\"{}\"", g.replace('"', "\"\"")))
                .collect::<Vec<_>>()
                .join(" AND ")
        });
        let order = match (q.order, &fts) {
            (Order::Relevance, _) if terms.is_empty() => {
                return Err(QueryError::RelevanceWithoutText);
            }
            (Order::Relevance, Some(_)) => Order::Relevance,
            _ => Order::Newest,
        };
        let cursor = match q.cursor.as_deref() {
            None => None,
            Some(s) => {
                let c = Cursor::decode(s).ok_or(QueryError::BadCursor)?;
                match (c, order) {
                    (Cursor::Newest { .. }, Order::Newest)
                    | (Cursor::Relevance { .. }, Order::Relevance) => Some(c),
                    _ => return Err(QueryError::BadCursor),
                }
            }
        };
        let limit = match q.limit {
            0 => DEFAULT_LIMIT,
            n => n.min(MAX_LIMIT),
        } as usize;
        // The walk cells, cut to the region (a cell lies in one region).
        let region_cells = q
            .region
            .and_then(|r| geo::region_range(r.as_str()))
            .map(|(lo, hi)| (lo >> WALK_SHIFT, hi >> WALK_SHIFT));
        let walk_cells = near
            .as_ref()
            .filter(|_| order == Order::Newest)
            .and_then(|(_, area)| area.walk_cells(MAX_WALK_CELLS))
            .map(|cells| {
                cells
                    .into_iter()
                    .filter(|c| region_cells.is_none_or(|(lo, hi)| (lo..hi).contains(c)))
                    .collect()
            });
        Ok(Self {
            region: q.region,
            near,
            walk_cells,
            terms,
            fts,
            collection: q.collection,
            author: q.author.as_ref().map(author_key),
            since: q.since_ms.map(clamp_i64),
            until: q.until_ms.map(clamp_i64),
            limit,
            cursor,
            order,
            include_deleted: q.include_deleted,
            now: clamp_i64(now_ms),
        })
    }

    /// Runs the query. The outer error is the database's, the inner one a
    /// stored record that does not decode.
    pub(in crate::store) fn run(
        &self,
        conn: &mut Connection,
    ) -> rusqlite::Result<Result<QueryPage, RecordStoreError>> {
        self.run_with(conn, None)
    }

    /// Runs the query finding candidates by `strategy` (chosen from the
    /// indexes when `None`; relevance order always uses the text index).
    pub(in crate::store) fn run_with(
        &self,
        conn: &mut Connection,
        strategy: Option<Strategy>,
    ) -> rusqlite::Result<Result<QueryPage, RecordStoreError>> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let strategy = match strategy {
            _ if self.order == Order::Relevance => Strategy::Text,
            Some(Strategy::Text) if self.fts.is_none() => Strategy::Walk,
            Some(Strategy::Geo) if self.near.is_none() => Strategy::Walk,
            Some(Strategy::GeoWalk) if self.walk_cells.is_none() => Strategy::Walk,
            Some(Strategy::Author) if self.author.is_none() => Strategy::Walk,
            Some(s) => s,
            None => self.strategy(conn)?,
        };
        let want = self.limit + 1;
        // Candidates come in result order; the exact distance (and, for walk
        // and geo, the row's own filters) may still refuse some, so ask for
        // more than a page. Rarely does a page need a second batch.
        //
        // A geo batch is a scan and sort of the whole cover, so it starts
        // larger (one scan is usually enough even when the text or the
        // circle refuses most candidates); every further batch is 4x larger,
        // so a sparse match costs a few scans, not one per page-sized batch.
        let mut batch = if strategy == Strategy::Geo {
            8 * want + 256
        } else {
            2 * want + 32
        };
        let mut check = match strategy {
            Strategy::Text | Strategy::Author => None,
            Strategy::Walk | Strategy::GeoWalk | Strategy::Geo => self.row_check(),
        }
        .map(|(sql, values)| conn.prepare_cached(&sql).map(|st| (st, values)))
        .transpose()?;
        let mut hits: Vec<Hit> = Vec::with_capacity(want);
        if strategy == Strategy::GeoWalk {
            self.walk_cells_merged(conn, &mut check, want, &mut hits)?;
        } else {
            let mut keyset = self.cursor;
            while let Some((sql, values)) = self.sql(strategy, keyset.as_ref(), batch, None) {
                let mut st = conn.prepare_cached(&sql)?;
                let mut rows = st.query(params_from_iter(values))?;
                let mut scanned = 0;
                while let Some(row) = rows.next()? {
                    scanned += 1;
                    let Some(c) = Candidate::read(row, strategy == Strategy::Text)? else {
                        continue;
                    };
                    keyset = Some(self.cursor_at(c.score, c.created_at, c.id));
                    if let Some(hit) = self.accept(c, &mut check)? {
                        hits.push(hit);
                        if hits.len() == want {
                            break;
                        }
                    }
                }
                if hits.len() == want || scanned < batch {
                    break;
                }
                batch = batch.saturating_mul(4);
            }
        }
        let next_cursor = if hits.len() == want {
            hits.truncate(self.limit);
            hits.last()
                .map(|h| self.cursor_at(h.score, h.created_at, h.id).encode())
        } else {
            None
        };
        let mut st = conn.prepare_cached(
            "SELECT r.received_ms, d.encoded FROM records r
             JOIN record_data d ON d.rid = r.rid WHERE r.rid = ?1",
        )?;
        let mut records = Vec::with_capacity(hits.len());
        for h in &hits {
            let Some((received, encoded)) = st
                .query_row([h.rid], |row| {
                    Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
                })
                .optional()?
            else {
                continue;
            };
            match stored(RecordId(h.id), received, &encoded, h.distance_m) {
                Ok(r) => records.push(r),
                Err(e) => return Ok(Err(e)),
            }
        }
        Ok(Ok(QueryPage {
            records,
            next_cursor,
        }))
    }

    /// The hit `c` makes, if the exact distance and the row's own filters
    /// (`check`: the statement and its values after the rid) let it through.
    fn accept(
        &self,
        c: Candidate,
        check: &mut Option<(rusqlite::CachedStatement<'_>, Vec<Value>)>,
    ) -> rusqlite::Result<Option<Hit>> {
        let distance_m = match &self.near {
            Some((near, _)) => {
                let d = geo::haversine_m((near.lat, near.lon), (c.lat, c.lon));
                if d > near.radius_m {
                    return Ok(None);
                }
                Some(d)
            }
            None => None,
        };
        if let Some((st, values)) = check {
            let mut args = Vec::with_capacity(values.len() + 1);
            args.push(Value::Integer(c.rid));
            args.extend(values.iter().cloned());
            if !st.exists(params_from_iter(args))? {
                return Ok(None);
            }
        }
        Ok(Some(Hit {
            rid: c.rid,
            created_at: c.created_at,
            id: c.id,
            score: c.score,
            distance_m,
        }))
    }

    /// Geo walk: each cell newest-first in small batches, merged newest-first
    /// across cells, until `want` hits. A cell's batches double as it is
    /// drained, so a sparse match costs a few statements per cell, and a
    /// dense one reads little more than the page.
    fn walk_cells_merged(
        &self,
        conn: &Connection,
        check: &mut Option<(rusqlite::CachedStatement<'_>, Vec<Value>)>,
        want: usize,
        hits: &mut Vec<Hit>,
    ) -> rusqlite::Result<()> {
        let cells = self.walk_cells.as_deref().unwrap_or_default();
        if cells.is_empty() {
            return Ok(());
        }
        // Twice a cell's share of a page to start with.
        let first = (2 * want).div_ceil(cells.len()).clamp(8, 256);
        let mut walks: Vec<CellWalk> = cells
            .iter()
            .map(|&cell| CellWalk {
                cell,
                buffered: VecDeque::new(),
                keyset: self.cursor,
                batch: first,
                exhausted: false,
            })
            .collect();
        let mut heads = BinaryHeap::with_capacity(walks.len());
        for (i, w) in walks.iter_mut().enumerate() {
            self.refill(conn, w)?;
            if let Some(c) = w.buffered.front() {
                heads.push((c.created_at, c.id, i));
            }
        }
        while let Some((_, _, i)) = heads.pop() {
            let w = &mut walks[i];
            let Some(c) = w.buffered.pop_front() else {
                continue;
            };
            if w.buffered.is_empty() && !w.exhausted {
                self.refill(conn, w)?;
            }
            if let Some(next) = w.buffered.front() {
                heads.push((next.created_at, next.id, i));
            }
            if let Some(hit) = self.accept(c, check)? {
                hits.push(hit);
                if hits.len() == want {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The next batch of one cell of a geo walk.
    fn refill(&self, conn: &Connection, w: &mut CellWalk) -> rusqlite::Result<()> {
        let Some((sql, values)) =
            self.sql(Strategy::GeoWalk, w.keyset.as_ref(), w.batch, Some(w.cell))
        else {
            w.exhausted = true;
            return Ok(());
        };
        let mut st = conn.prepare_cached(&sql)?;
        let mut rows = st.query(params_from_iter(values))?;
        let mut scanned = 0;
        while let Some(row) = rows.next()? {
            scanned += 1;
            let created_at: i64 = row.get(3)?;
            let Ok(id) = <[u8; 32]>::try_from(row.get_ref(4)?.as_blob()?) else {
                continue;
            };
            w.keyset = Some(Cursor::Newest { created_at, id });
            if let Some(c) = Candidate::read(row, false)? {
                w.buffered.push_back(c);
            }
        }
        w.exhausted = scanned < w.batch;
        w.batch = w.batch.saturating_mul(2).min(MAX_WALK_BATCH);
        Ok(())
    }

    fn cursor_at(&self, score: f64, created_at: i64, id: [u8; 32]) -> Cursor {
        match self.order {
            Order::Newest => Cursor::Newest { created_at, id },
            Order::Relevance => Cursor::Relevance {
                score,
                created_at,
                id,
            },
        }
    }

    /// Picks how to find candidates, from bounded counts on the indexes.
    pub(in crate::store) fn strategy(&self, conn: &Connection) -> rusqlite::Result<Strategy> {
        if self.order == Order::Relevance {
            return Ok(Strategy::Text);
        }
        // Rough cost per candidate: a geo candidate is an index entry (the
        // index covers every check but the row's own filters), a text one a
        // row read.
        if self.walk_cells.is_some() {
            // A geo walk reads little more than the page needs whatever the
            // circle holds; only a text or author index that finds almost
            // nothing beats it (a merge of dozens of cells has a fixed cost).
            for (count, strategy) in [
                (self.text_count(conn, CHEAP)?, Strategy::Text),
                (self.author_count(conn, CHEAP)?, Strategy::Author),
            ] {
                if count.is_some_and(|n| n < CHEAP) {
                    return Ok(strategy);
                }
            }
            return Ok(Strategy::GeoWalk);
        }
        let mut best: Option<(i64, Strategy)> = None;
        if self.near.is_some() {
            let ranges = self.geo_ranges();
            let sql = format!(
                "WITH g(wlo, whi, lo, hi) AS (VALUES {}) SELECT count(*) FROM (
                     SELECT 1 FROM g CROSS JOIN records r INDEXED BY records_geo
                     ON {GEO_JOIN} LIMIT {SELECTIVE_GEO})",
                vec!["(?, ?, ?, ?)"; ranges.len().max(1)].join(", ")
            );
            let values = range_values(&ranges);
            let n: i64 = conn
                .prepare_cached(&sql)?
                .query_row(params_from_iter(values), |r| r.get(0))?;
            if n < SELECTIVE_GEO {
                best = Some((n / GEO_ENTRIES_PER_ROW, Strategy::Geo));
            }
        }
        // A small geo scan beats anything the text count could find.
        let geo_is_cheap = best.is_some_and(|(cost, _)| cost < CHEAP);
        if !geo_is_cheap
            && let Some(n) = self.text_count(conn, SELECTIVE_TEXT)?
            && n < SELECTIVE_TEXT
            && best.is_none_or(|(m, _)| n < m)
        {
            best = Some((n, Strategy::Text));
        }
        if best.is_none_or(|(c, _)| c >= CHEAP)
            && let Some(n) = self.author_count(conn, SELECTIVE_TEXT)?
            && n < SELECTIVE_TEXT
            && best.is_none_or(|(m, _)| n < m)
        {
            best = Some((n, Strategy::Author));
        }
        Ok(best.map_or(Strategy::Walk, |(_, s)| s))
    }

    /// How many records the text index finds, counted up to `bound`
    /// (`None` without words to look up).
    fn text_count(&self, conn: &Connection, bound: i64) -> rusqlite::Result<Option<i64>> {
        let Some(fts) = &self.fts else {
            return Ok(None);
        };
        conn.prepare_cached(&format!(
            "SELECT count(*) FROM (
                 SELECT rowid FROM records_fts WHERE records_fts MATCH ?1 LIMIT {bound})"
        ))?
        .query_row([fts], |r| r.get(0))
        .map(Some)
    }

    /// How many records the author has, counted up to `bound` (`None`
    /// without an author filter).
    fn author_count(&self, conn: &Connection, bound: i64) -> rusqlite::Result<Option<i64>> {
        let Some(author) = self.author else {
            return Ok(None);
        };
        conn.prepare_cached(&format!(
            "SELECT count(*) FROM (
                 SELECT 1 FROM records INDEXED BY records_slot WHERE author = ?1 LIMIT {bound})"
        ))?
        .query_row([&author[..]], |r| r.get(0))
        .map(Some)
    }

    /// The circle's cover as ranges of `records.cell`, cut to the region
    /// when the query has one.
    fn geo_ranges(&self) -> Vec<(u64, u64)> {
        let Some((_, area)) = &self.near else {
            return Vec::new();
        };
        let ranges = area.cell_ranges();
        let Some(region) = self.region.and_then(|r| geo::region_range(r.as_str())) else {
            return ranges;
        };
        ranges
            .into_iter()
            .filter_map(|(lo, hi)| {
                let (lo, hi) = (lo.max(region.0), hi.min(region.1));
                (lo < hi).then_some((lo, hi))
            })
            .collect()
    }

    /// The filters that need the row itself (not in the covering indexes),
    /// as a statement on `?1` = rid, with their values (after the rid).
    fn row_check(&self) -> Option<(String, Vec<Value>)> {
        let mut sql = String::from("SELECT 1 FROM records WHERE rid = ?");
        let mut values = Vec::new();
        if let Some(c) = &self.collection {
            sql.push_str(" AND collection = ?");
            values.push(Value::Text(c.clone()));
        }
        if let Some(a) = &self.author {
            sql.push_str(" AND author = ?");
            values.push(Value::Blob(a.to_vec()));
        }
        for t in &self.terms {
            sql.push_str(" AND instr(text, ?) > 0");
            values.push(Value::Text(t.clone()));
        }
        (!values.is_empty()).then_some((sql, values))
    }

    /// The first candidate query of this plan (for checking query plans).
    #[cfg(test)]
    pub(in crate::store) fn first_sql(&self, strategy: Strategy) -> Option<(String, Vec<Value>)> {
        let cell = self.walk_cells.as_ref().and_then(|c| c.first().copied());
        self.sql(strategy, self.cursor.as_ref(), 10, cell)
    }

    /// The candidate query for `strategy`, continuing after `keyset`, or
    /// `None` if it can find nothing (the circle misses the region).
    ///
    /// Walk and geo read only their covering index (the row's own filters
    /// are [`row_check`](Self::row_check)); text and author read the rows
    /// they find and check everything.
    fn sql(
        &self,
        strategy: Strategy,
        keyset: Option<&Cursor>,
        batch: usize,
        cell: Option<u64>,
    ) -> Option<(String, Vec<Value>)> {
        let mut values: Vec<Value> = Vec::new();
        let mut sql = String::new();
        let columns = "r.rid, r.lat, r.lon, r.created_at, r.id";
        let mut row_filters = false;
        match strategy {
            Strategy::Walk => {
                let index = if self.region.is_some() {
                    "records_region"
                } else {
                    "records_created"
                };
                sql.push_str(&format!(
                    "SELECT {columns} FROM records r INDEXED BY {index} WHERE 1"
                ));
            }
            Strategy::Geo => {
                let ranges = self.geo_ranges();
                if ranges.is_empty() {
                    return None;
                }
                sql.push_str(&format!(
                    "WITH g(wlo, whi, lo, hi) AS (VALUES {}) SELECT {columns}
                     FROM g CROSS JOIN records r INDEXED BY records_geo
                     ON {GEO_JOIN} WHERE 1",
                    vec!["(?, ?, ?, ?)"; ranges.len()].join(", ")
                ));
                values.extend(range_values(&ranges));
            }
            Strategy::GeoWalk => {
                sql.push_str(&format!(
                    "SELECT {columns} FROM records r INDEXED BY records_geo
                     WHERE (r.cell >> {WALK_SHIFT}) = ?"
                ));
                values.push(Value::Integer(clamp_i64(cell?)));
            }
            Strategy::Author => {
                sql.push_str(&format!(
                    "SELECT {columns} FROM records r INDEXED BY records_slot WHERE 1"
                ));
                row_filters = true;
            }
            Strategy::Text => {
                sql.push_str(&format!(
                    "SELECT {columns}, bm25(records_fts) FROM records_fts
                     CROSS JOIN records r ON r.rid = records_fts.rowid
                     WHERE records_fts MATCH ?"
                ));
                values.push(Value::Text(self.fts.clone().unwrap_or_default()));
                row_filters = true;
            }
        }
        let mut cond = |sql: &mut String, c: &str, v: &mut dyn FnMut(&mut Vec<Value>)| {
            sql.push_str(" AND ");
            sql.push_str(c);
            v(&mut values);
        };
        if let Some(region) = &self.region
            && !matches!(strategy, Strategy::Geo | Strategy::GeoWalk)
        {
            let region = region.as_str().to_owned();
            cond(&mut sql, "r.region = ?", &mut |v| {
                v.push(Value::Text(region.clone()))
            });
        }
        if !self.include_deleted {
            cond(&mut sql, "r.deleted = 0", &mut |_| {});
        }
        cond(
            &mut sql,
            "(r.expires_at IS NULL OR r.expires_at > ?)",
            &mut |v| v.push(Value::Integer(self.now)),
        );
        if let Some(s) = self.since {
            cond(&mut sql, "r.created_at >= ?", &mut |v| {
                v.push(Value::Integer(s))
            });
        }
        if let Some(u) = self.until {
            cond(&mut sql, "r.created_at < ?", &mut |v| {
                v.push(Value::Integer(u))
            });
        }
        if let Some((_, area)) = &self.near {
            cond(&mut sql, "r.lat BETWEEN ? AND ?", &mut |v| {
                v.push(Value::Real(area.lat_min));
                v.push(Value::Real(area.lat_max));
            });
            if area
                .lon_ranges
                .iter()
                .all(|&(lo, hi)| lo > -180.0 || hi < 180.0)
            {
                let lon = vec!["r.lon BETWEEN ? AND ?"; area.lon_ranges.len()].join(" OR ");
                cond(&mut sql, &format!("({lon})"), &mut |v| {
                    for &(lo, hi) in &area.lon_ranges {
                        v.push(Value::Real(lo));
                        v.push(Value::Real(hi));
                    }
                });
            }
        }
        if row_filters {
            if let Some(c) = &self.collection {
                cond(&mut sql, "r.collection = ?", &mut |v| {
                    v.push(Value::Text(c.clone()))
                });
            }
            if let Some(a) = &self.author {
                cond(&mut sql, "r.author = ?", &mut |v| {
                    v.push(Value::Blob(a.to_vec()))
                });
            }
            for t in &self.terms {
                cond(&mut sql, "instr(r.text, ?) > 0", &mut |v| {
                    v.push(Value::Text(t.clone()))
                });
            }
        }
        match keyset {
            Some(Cursor::Newest { created_at, id }) => {
                cond(&mut sql, "(r.created_at, r.id) < (?, ?)", &mut |v| {
                    v.push(Value::Integer(*created_at));
                    v.push(Value::Blob(id.to_vec()));
                });
            }
            Some(Cursor::Relevance {
                score,
                created_at,
                id,
            }) => {
                cond(
                    &mut sql,
                    "(bm25(records_fts) > ? OR (bm25(records_fts) = ? AND (r.created_at, r.id) < (?, ?)))",
                    &mut |v| {
                        v.push(Value::Real(*score));
                        v.push(Value::Real(*score));
                        v.push(Value::Integer(*created_at));
                        v.push(Value::Blob(id.to_vec()));
                    },
                );
            }
            None => {}
        }
        // LIMIT is written into the statement, not bound: SQLite plans with
        // a bound LIMIT's value and re-prepares the statement on every new
        // binding. There are few distinct batch sizes.
        match self.order {
            Order::Newest => sql.push_str(" ORDER BY r.created_at DESC, r.id DESC"),
            Order::Relevance => {
                sql.push_str(" ORDER BY bm25(records_fts), r.created_at DESC, r.id DESC")
            }
        }
        sql.push_str(&format!(" LIMIT {batch}"));
        Some((sql, values))
    }
}

/// The join of the cover ranges `g` with `records_geo`: the index's first
/// column is the walk cell, so each range is sought by its walk cells and
/// cut to its exact stored cells.
const GEO_JOIN: &str = "(r.cell >> 5) >= g.wlo AND (r.cell >> 5) < g.whi \
                        AND r.cell >= g.lo AND r.cell < g.hi";

// The migration that made `records_geo` writes the shift as a literal.
const _: () = assert!(WALK_SHIFT == 5);

/// The values of the `g` rows for `ranges` (one empty range if none).
fn range_values(ranges: &[(u64, u64)]) -> Vec<Value> {
    if ranges.is_empty() {
        return vec![Value::Integer(0); 4];
    }
    ranges
        .iter()
        .flat_map(|&(lo, hi)| {
            [lo >> WALK_SHIFT, ((hi - 1) >> WALK_SHIFT) + 1, lo, hi]
                .map(|v| Value::Integer(clamp_i64(v)))
        })
        .collect()
}
