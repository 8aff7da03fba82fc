//! Geohash cells and the geometry of "near here" queries.
//!
//! A geohash names a cell of a grid laid over latitude and longitude: each
//! character adds five bits, alternately halving the longitude (first) and
//! the latitude range. Records carry a geohash of 4 to 7 characters; their
//! position is the centre of that cell.
//!
//! Written here rather than taken from the `geohash` crate because the store
//! needs two things the crate does not give: the integer form of a cell (a
//! record's 7-character cell is an indexed integer column, and a prefix is an
//! integer range), and a [`cover`] whose cells come from exactly the same
//! arithmetic as the cells of stored positions. Every cell index here is
//! `floor(u · 2^bits)` of one rounded value `u` per coordinate, so a point's
//! cell at any precision is the prefix of its cell at a finer one, and a point
//! inside a circle can never slip into a neighbouring cell through rounding.

/// The longest geohash [`encode`] produces and [`decode`] accepts
/// (60 bits: 30 of longitude, 30 of latitude).
pub const MAX_PRECISION: usize = 12;

/// The mean Earth radius (IUGG), metres; distances are on this sphere.
pub const EARTH_RADIUS_M: f64 = 6_371_008.8;

/// The largest radius [`cover`] accepts, metres.
pub const MAX_RADIUS_M: f64 = 1_000_000.0;

/// The most cells [`cover`] returns.
pub const MAX_COVER_CELLS: usize = 32;

/// The precision of the cell stored per record (the longest record geohash).
pub(crate) const STORE_PRECISION: usize = 7;

/// The precision of the cells the store's geo index orders by time within
/// (`cell >> WALK_SHIFT`): about 1.2 × 0.6 km, so a circle of a few
/// kilometres meets a few dozen of them.
pub(crate) const WALK_PRECISION: usize = 6;

/// [`STORE_PRECISION`] cells to [`WALK_PRECISION`] cells.
pub(crate) const WALK_SHIFT: u32 = 5 * (STORE_PRECISION - WALK_PRECISION) as u32;

/// Widening of every bounding box, degrees (≈ 0.1 m): more than any rounding
/// error of the trigonometry, so the box always holds the whole circle.
const MARGIN_DEG: f64 = 1e-6;

const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// A decoded geohash cell: its centre and half-sizes, degrees.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Cell {
    /// Latitude of the centre.
    pub lat: f64,
    /// Longitude of the centre.
    pub lon: f64,
    /// Half the cell's height (the centre is within this of every point).
    pub lat_err: f64,
    /// Half the cell's width.
    pub lon_err: f64,
}

impl Cell {
    /// Whether a point lies in the cell (edges included).
    pub fn contains(&self, lat: f64, lon: f64) -> bool {
        (lat - self.lat).abs() <= self.lat_err && (lon - self.lon).abs() <= self.lon_err
    }
}

/// Why a circle cannot be covered.
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
pub enum GeoError {
    /// The latitude is not a number in -90..=90.
    #[error("latitude {0} is outside -90..=90")]
    Latitude(f64),
    /// The longitude is not a number in -180..=180.
    #[error("longitude {0} is outside -180..=180")]
    Longitude(f64),
    /// The radius is negative or not a number.
    #[error("radius {0} m is not a distance (it must be a number ≥ 0)")]
    Radius(f64),
    /// The radius exceeds [`MAX_RADIUS_M`].
    #[error("radius {0} m is larger than the limit of {MAX_RADIUS_M} m (1000 km)")]
    RadiusTooLarge(f64),
}

/// Encodes a point as a geohash of `precision` characters (at most
/// [`MAX_PRECISION`]; 0 gives the empty string). Never fails: a latitude
/// outside -90..=90 is clamped, a longitude outside -180..=180 is wrapped, and
/// a coordinate that is not a finite number counts as 0.
pub fn encode(lat: f64, lon: f64, precision: usize) -> String {
    let precision = precision.min(MAX_PRECISION);
    to_string(value(sane_lat(lat), sane_lon(lon), precision), precision)
}

/// Decodes a geohash (1 to [`MAX_PRECISION`] lowercase characters) into its
/// cell, or `None` if it is not one.
pub fn decode(geohash: &str) -> Option<Cell> {
    let precision = geohash.len();
    let v = parse(geohash)?;
    let (lat_bits, lon_bits) = bits(precision);
    let (lat_idx, lon_idx) = deinterleave(v, lat_bits, lon_bits);
    let lat_size = 180.0 / pow2(lat_bits);
    let lon_size = 360.0 / pow2(lon_bits);
    Some(Cell {
        lat: -90.0 + (lat_idx as f64 + 0.5) * lat_size,
        lon: -180.0 + (lon_idx as f64 + 0.5) * lon_size,
        lat_err: lat_size / 2.0,
        lon_err: lon_size / 2.0,
    })
}

/// Whether `s` is a geohash: 1 to [`MAX_PRECISION`] characters of the
/// lowercase geohash alphabet.
pub fn is_valid(s: &str) -> bool {
    parse(s).is_some()
}

/// Why text is not a `LAT,LON` point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PointError {
    /// Not two comma-separated numbers.
    #[error("expected LAT,LON in degrees, e.g. 18.7883,98.9853")]
    Syntax,
    /// A coordinate out of range.
    #[error("latitude must be within ±90 and longitude within ±180")]
    Range,
}

/// Parses `LAT,LON` in degrees (spaces allowed around the numbers), as the
/// CLI and the HTTP API take a point.
pub fn parse_point(s: &str) -> Result<(f64, f64), PointError> {
    let (a, b) = s.split_once(',').ok_or(PointError::Syntax)?;
    let lat: f64 = a.trim().parse().map_err(|_| PointError::Syntax)?;
    let lon: f64 = b.trim().parse().map_err(|_| PointError::Syntax)?;
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return Err(PointError::Range);
    }
    Ok((lat, lon))
}

/// The great-circle distance between two `(lat, lon)` points in degrees,
/// metres (haversine on a sphere of [`EARTH_RADIUS_M`]).
pub fn haversine_m(a: (f64, f64), b: (f64, f64)) -> f64 {
    let (p1, p2) = (a.0.to_radians(), b.0.to_radians());
    let dp = p2 - p1;
    let dl = (b.1 - a.1).to_radians();
    let h = (dp / 2.0).sin().powi(2) + p1.cos() * p2.cos() * (dl / 2.0).sin().powi(2);
    2.0 * EARTH_RADIUS_M * h.sqrt().clamp(0.0, 1.0).asin()
}

/// A small set of geohash cells (at most [`MAX_COVER_CELLS`], all of one
/// precision, the finest ≤ 7 that keeps the set that small) whose union holds
/// every point within `radius_m` of `(lat, lon)`. A circle that reaches a pole
/// spans all longitudes; one that crosses the ±180° meridian gets cells on
/// both sides. Sorted and without duplicates.
pub fn cover(lat: f64, lon: f64, radius_m: f64) -> Result<Vec<String>, GeoError> {
    let area = Area::new(lat, lon, radius_m)?;
    Ok(area
        .cells
        .iter()
        .map(|&v| to_string(v, area.precision))
        .collect())
}

/// A circle prepared for querying: its bounding box and its cover.
#[derive(Debug, Clone)]
pub(crate) struct Area {
    /// Southern edge of the bounding box.
    pub(crate) lat_min: f64,
    /// Northern edge of the bounding box.
    pub(crate) lat_max: f64,
    /// One or two (across ±180°) longitude intervals of the bounding box.
    pub(crate) lon_ranges: Vec<(f64, f64)>,
    /// The precision of `cells`.
    pub(crate) precision: usize,
    /// The cover's cells as integers, sorted.
    pub(crate) cells: Vec<u64>,
}

impl Area {
    /// Prepares the circle of `radius_m` around `(lat, lon)`.
    pub(crate) fn new(lat: f64, lon: f64, radius_m: f64) -> Result<Self, GeoError> {
        if !(-90.0..=90.0).contains(&lat) {
            return Err(GeoError::Latitude(lat));
        }
        if !(-180.0..=180.0).contains(&lon) {
            return Err(GeoError::Longitude(lon));
        }
        if radius_m.is_nan() || radius_m < 0.0 {
            return Err(GeoError::Radius(radius_m));
        }
        if radius_m > MAX_RADIUS_M {
            return Err(GeoError::RadiusTooLarge(radius_m));
        }
        let delta = radius_m / EARTH_RADIUS_M;
        let delta_deg = delta.to_degrees() + MARGIN_DEG;
        let (lat_min, lat_max) = (lat - delta_deg, lat + delta_deg);
        let full = vec![(-180.0, 180.0)];
        let lon_ranges = if lat_min <= -90.0 || lat_max >= 90.0 {
            // The circle holds a pole: every longitude.
            full
        } else {
            // Widest longitude offset of a spherical cap of angular radius
            // `delta` centred at `lat` (it holds no pole, so the ratio < 1).
            let s = delta.sin() / lat.to_radians().cos();
            let d = if s >= 1.0 {
                180.0
            } else {
                s.asin().to_degrees() + MARGIN_DEG
            };
            let (lo, hi) = (lon - d, lon + d);
            if d >= 180.0 {
                full
            } else if lo < -180.0 {
                vec![(-180.0, hi), (lo + 360.0, 180.0)]
            } else if hi > 180.0 {
                vec![(-180.0, hi - 360.0), (lo, 180.0)]
            } else {
                vec![(lo, hi)]
            }
        };
        let (lat_min, lat_max) = (lat_min.max(-90.0), lat_max.min(90.0));
        let mut area = Area {
            lat_min,
            lat_max,
            lon_ranges,
            precision: 1,
            cells: Vec::new(),
        };
        // The finest precision whose grid cells over the box stay few. At
        // precision 1 the whole world is 4 × 8 = 32 cells, so the loop
        // always ends with a cover.
        for precision in (1..=STORE_PRECISION).rev() {
            let max = if precision > 1 {
                MAX_COVER_CELLS
            } else {
                usize::MAX
            };
            if let Some(cells) = area.grid(precision, max) {
                area.precision = precision;
                area.cells = cells;
                break;
            }
        }
        Ok(area)
    }

    /// The cells of `precision` that meet the bounding box, sorted and
    /// without duplicates, or `None` if there are more than `max`.
    fn grid(&self, precision: usize, max: usize) -> Option<Vec<u64>> {
        let (lat_bits, lon_bits) = bits(precision);
        let lat_span = (
            index(unit_lat(self.lat_min), lat_bits),
            index(unit_lat(self.lat_max), lat_bits),
        );
        let lon_spans: Vec<(u64, u64)> = self
            .lon_ranges
            .iter()
            .map(|&(lo, hi)| (index(unit_lon(lo), lon_bits), index(unit_lon(hi), lon_bits)))
            .collect();
        let rows = lat_span.1 - lat_span.0 + 1;
        let cols: u64 = lon_spans.iter().map(|(a, b)| b - a + 1).sum();
        if rows.saturating_mul(cols) > max as u64 {
            return None;
        }
        let mut cells = Vec::with_capacity((rows * cols) as usize);
        for i in lat_span.0..=lat_span.1 {
            for &(a, b) in &lon_spans {
                for j in a..=b {
                    cells.push(interleave(i, j, lat_bits, lon_bits));
                }
            }
        }
        cells.sort_unstable();
        cells.dedup();
        Some(cells)
    }

    /// The [`WALK_PRECISION`] cells that meet the bounding box, or `None`
    /// if there are more than `max` (the store walks each one newest-first).
    pub(crate) fn walk_cells(&self, max: usize) -> Option<Vec<u64>> {
        self.grid(WALK_PRECISION, max)
    }

    /// The cover as half-open ranges of [`cell_index`] values, adjacent
    /// cells merged.
    pub(crate) fn cell_ranges(&self) -> Vec<(u64, u64)> {
        let shift = 5 * (STORE_PRECISION - self.precision) as u32;
        let mut out: Vec<(u64, u64)> = Vec::with_capacity(self.cells.len());
        for &c in &self.cells {
            let (lo, hi) = (c << shift, (c + 1) << shift);
            match out.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => out.push((lo, hi)),
            }
        }
        out
    }

    /// Whether a point is inside the bounding box (the store checks the box
    /// in SQL; this is its reference).
    #[cfg(test)]
    pub(crate) fn box_contains(&self, lat: f64, lon: f64) -> bool {
        lat >= self.lat_min
            && lat <= self.lat_max
            && self
                .lon_ranges
                .iter()
                .any(|&(lo, hi)| lon >= lo && lon <= hi)
    }
}

/// The integer cell of a point at [`STORE_PRECISION`] (35 bits), as stored
/// per record. A geohash prefix of length `p` is the range
/// `[v << 5(7-p), (v+1) << 5(7-p))` of these.
pub(crate) fn cell_index(lat: f64, lon: f64) -> u64 {
    value(sane_lat(lat), sane_lon(lon), STORE_PRECISION)
}

/// The [`cell_index`] range of a geohash prefix (1 to 7 characters), or
/// `None` if it is not one.
pub(crate) fn region_range(prefix: &str) -> Option<(u64, u64)> {
    if prefix.len() > STORE_PRECISION {
        return None;
    }
    let v = parse(prefix)?;
    let shift = 5 * (STORE_PRECISION - prefix.len()) as u32;
    Some((v << shift, (v + 1) << shift))
}

/// Bits of latitude and of longitude in a geohash of `precision` characters
/// (longitude takes the odd one).
fn bits(precision: usize) -> (u32, u32) {
    let total = 5 * precision as u32;
    (total / 2, total - total / 2)
}

fn pow2(bits: u32) -> f64 {
    (1u64 << bits) as f64
}

fn sane_lat(lat: f64) -> f64 {
    if lat.is_nan() {
        0.0
    } else {
        lat.clamp(-90.0, 90.0)
    }
}

fn sane_lon(lon: f64) -> f64 {
    if !lon.is_finite() {
        0.0
    } else if (-180.0..=180.0).contains(&lon) {
        lon
    } else {
        (lon + 180.0).rem_euclid(360.0) - 180.0
    }
}

fn unit_lat(lat: f64) -> f64 {
    ((lat + 90.0) / 180.0).clamp(0.0, 1.0)
}

fn unit_lon(lon: f64) -> f64 {
    ((lon + 180.0) / 360.0).clamp(0.0, 1.0)
}

/// `floor(u · 2^bits)`, the top cell for `u = 1`. Scaling by a power of two
/// is exact, so the index at fewer bits is this one shifted right.
fn index(u: f64, bits: u32) -> u64 {
    let max = (1u64 << bits) - 1;
    // `as` saturates; `u` is in 0..=1 so the product is in 0..=2^bits.
    ((u * pow2(bits)).floor() as u64).min(max)
}

fn value(lat: f64, lon: f64, precision: usize) -> u64 {
    let (lat_bits, lon_bits) = bits(precision);
    interleave(
        index(unit_lat(lat), lat_bits),
        index(unit_lon(lon), lon_bits),
        lat_bits,
        lon_bits,
    )
}

/// Interleaves the bits, most significant first, longitude first.
fn interleave(lat_idx: u64, lon_idx: u64, lat_bits: u32, lon_bits: u32) -> u64 {
    let mut v = 0u64;
    for k in 0..lat_bits + lon_bits {
        let bit = if k % 2 == 0 {
            (lon_idx >> (lon_bits - 1 - k / 2)) & 1
        } else {
            (lat_idx >> (lat_bits - 1 - k / 2)) & 1
        };
        v = (v << 1) | bit;
    }
    v
}

fn deinterleave(v: u64, lat_bits: u32, lon_bits: u32) -> (u64, u64) {
    let total = lat_bits + lon_bits;
    let (mut lat, mut lon) = (0u64, 0u64);
    for k in 0..total {
        let bit = (v >> (total - 1 - k)) & 1;
        if k % 2 == 0 {
            lon = (lon << 1) | bit;
        } else {
            lat = (lat << 1) | bit;
        }
    }
    (lat, lon)
}

fn to_string(v: u64, precision: usize) -> String {
    (0..precision)
        .map(|i| {
            let shift = 5 * (precision - 1 - i);
            char::from(ALPHABET[((v >> shift) & 31) as usize])
        })
        .collect()
}

fn parse(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > MAX_PRECISION {
        return None;
    }
    s.bytes().try_fold(0u64, |v, b| {
        let d = ALPHABET.iter().position(|&a| a == b)?;
        Some((v << 5) | d as u64)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn points_parse() {
        assert_eq!(parse_point("18.79, 98.98"), Ok((18.79, 98.98)));
        assert_eq!(parse_point("-33.9,151.2"), Ok((-33.9, 151.2)));
        assert_eq!(parse_point("98.98,18.79,1"), Err(PointError::Syntax));
        assert_eq!(parse_point("north"), Err(PointError::Syntax));
        assert_eq!(parse_point("91,0"), Err(PointError::Range));
        assert_eq!(parse_point("0,180.5"), Err(PointError::Range));
    }

    #[test]
    fn known_geohashes() {
        // Wikipedia's example and Chiang Mai's region.
        assert_eq!(encode(42.605, -5.603, 5), "ezs42");
        assert_eq!(encode(18.7883, 98.9853, 4), "w5q6");
        assert_eq!(encode(57.64911, 10.40744, 11), "u4pruydqqvj");
        let c = decode("ezs42").unwrap();
        assert!(
            (c.lat - 42.605).abs() < 0.03 && (c.lon - -5.603).abs() < 0.03,
            "{c:?}"
        );
        assert!(c.contains(42.605, -5.603));
        assert_eq!(encode(1.0, 2.0, 0), "");
        assert_eq!(encode(f64::NAN, f64::INFINITY, 3), encode(0.0, 0.0, 3));
        assert_eq!(encode(95.0, 190.0, 6), encode(90.0, -170.0, 6));
        assert_eq!(encode(10.0, 20.0, 99).len(), MAX_PRECISION);
    }

    #[test]
    fn validity() {
        for ok in ["w", "w5q6", "w5q6u8j", "0123456789bc"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in ["", "w5qa", "W5Q6", "w5q6u8jw5q6u8", "w5q é", "i", "l", "o"] {
            assert!(!is_valid(bad), "{bad}");
            assert_eq!(decode(bad), None);
        }
    }

    #[test]
    fn haversine_known_distances() {
        // One degree of latitude ≈ 111.2 km; Chiang Mai ↔ Bangkok ≈ 586 km.
        let d = haversine_m((0.0, 0.0), (1.0, 0.0));
        assert!((d - 111_195.0).abs() < 10.0, "{d}");
        let d = haversine_m((18.7883, 98.9853), (13.7563, 100.5018));
        assert!((d - 586_000.0).abs() < 5_000.0, "{d}");
        // Across the antimeridian.
        let d = haversine_m((0.0, 179.9), (0.0, -179.9));
        assert!((d - 22_239.0).abs() < 10.0, "{d}");
        assert_eq!(haversine_m((5.0, 5.0), (5.0, 5.0)), 0.0);
    }

    #[test]
    fn cover_errors_and_sizes() {
        assert_eq!(
            cover(0.0, 0.0, 1_000_001.0),
            Err(GeoError::RadiusTooLarge(1_000_001.0))
        );
        assert_eq!(cover(0.0, 0.0, -1.0), Err(GeoError::Radius(-1.0)));
        assert!(matches!(
            cover(0.0, 0.0, f64::NAN),
            Err(GeoError::Radius(_))
        ));
        assert_eq!(cover(91.0, 0.0, 1.0), Err(GeoError::Latitude(91.0)));
        assert_eq!(cover(0.0, 181.0, 1.0), Err(GeoError::Longitude(181.0)));
        // A small circle: fine cells.
        let c = cover(18.7883, 98.9853, 100.0).unwrap();
        assert!(
            c.iter().all(|g| g.len() == 7 && g.starts_with("w5q6")),
            "{c:?}"
        );
        assert!(c.len() <= 9, "{c:?}");
        // The largest circle still gives a small set.
        let c = cover(18.7883, 98.9853, MAX_RADIUS_M).unwrap();
        assert!(!c.is_empty() && c.len() <= MAX_COVER_CELLS, "{c:?}");
    }

    #[test]
    fn cover_near_pole_and_antimeridian() {
        // Reaches the North Pole: every longitude.
        let c = cover(89.9, 10.0, 50_000.0).unwrap();
        let lons: Vec<f64> = c.iter().map(|g| decode(g).unwrap().lon).collect();
        assert!(
            lons.iter().any(|&l| l < -90.0) && lons.iter().any(|&l| l > 90.0),
            "{c:?}"
        );
        // Straddles ±180°: cells on both sides.
        let c = cover(0.0, 179.99, 10_000.0).unwrap();
        let lons: Vec<f64> = c.iter().map(|g| decode(g).unwrap().lon).collect();
        assert!(
            lons.iter().any(|&l| l < -179.0) && lons.iter().any(|&l| l > 179.0),
            "{c:?}"
        );
        assert!(c.len() <= MAX_COVER_CELLS);
    }

    /// The point `distance_m` from `(lat, lon)` along `bearing` (radians).
    fn destination(lat: f64, lon: f64, bearing: f64, distance_m: f64) -> (f64, f64) {
        let d = distance_m / EARTH_RADIUS_M;
        let (p1, l1) = (lat.to_radians(), lon.to_radians());
        let p2 = (p1.sin() * d.cos() + p1.cos() * d.sin() * bearing.cos())
            .clamp(-1.0, 1.0)
            .asin();
        let l2 = l1 + (bearing.sin() * d.sin() * p1.cos()).atan2(d.cos() - p1.sin() * p2.sin());
        (p2.to_degrees(), sane_lon(l2.to_degrees()))
    }

    fn centre() -> impl Strategy<Value = (f64, f64)> {
        prop_oneof![
            (-90.0..=90.0f64, -180.0..=180.0f64),
            // Near the poles and the antimeridian.
            (
                prop_oneof![85.0..=90.0f64, -90.0..=-85.0f64],
                -180.0..=180.0f64
            ),
            (
                -90.0..=90.0f64,
                prop_oneof![175.0..=180.0f64, -180.0..=-175.0f64]
            ),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn encode_decode_round_trip(lat in -90.0..=90.0f64, lon in -180.0..=180.0f64, p in 1usize..=MAX_PRECISION) {
            let g = encode(lat, lon, p);
            prop_assert_eq!(g.len(), p);
            prop_assert!(is_valid(&g));
            let cell = decode(&g).unwrap();
            prop_assert!(cell.contains(lat, lon), "{} {:?} ({}, {})", g, cell, lat, lon);
            // Coarser encodings are prefixes of finer ones.
            prop_assert!(encode(lat, lon, MAX_PRECISION).starts_with(&g));
            // Re-encoding the centre gives the same cell.
            prop_assert_eq!(encode(cell.lat, cell.lon, p), g);
        }

        #[test]
        fn cover_holds_every_point_of_the_circle(
            (lat, lon) in centre(),
            radius in prop_oneof![0.0..=2_000.0f64, 0.0..=MAX_RADIUS_M],
            bearing in 0.0..std::f64::consts::TAU,
            frac in 0.0..=1.0f64,
        ) {
            let cells = cover(lat, lon, radius).unwrap();
            prop_assert!(!cells.is_empty() && cells.len() <= MAX_COVER_CELLS);
            let (plat, plon) = destination(lat, lon, bearing, radius * frac);
            prop_assume!(haversine_m((lat, lon), (plat, plon)) <= radius);
            let g = encode(plat, plon, MAX_PRECISION);
            prop_assert!(cells.iter().any(|c| g.starts_with(c.as_str())), "{} not in {:?}", g, cells);
            let area = Area::new(lat, lon, radius).unwrap();
            prop_assert!(area.box_contains(plat, plon));
            let v = cell_index(plat, plon);
            prop_assert!(area.cell_ranges().iter().any(|&(a, b)| v >= a && v < b));
        }
    }
}
