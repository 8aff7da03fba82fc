//! Geohash checks and decoding (records carry a geohash, not coordinates).

const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";

/// Whether `text` is a region: exactly 4 geohash characters (lowercase).
pub fn is_region(text: &str) -> bool {
    text.len() == 4 && text.bytes().all(|b| ALPHABET.contains(&b))
}

/// The shortest geohash precise enough to be shown as a point: 6 characters
/// are a cell of about 1.2 km × 0.6 km; a 4-character region (~20 km) is not
/// a place.
const MIN_POINT_CHARS: usize = 6;

/// The centre of `geohash`'s cell as (lat, lon) degrees, when the geohash is
/// valid and at least 6 characters long.
pub fn point(geohash: &str) -> Option<(f64, f64)> {
    if geohash.len() < MIN_POINT_CHARS || geohash.len() > 12 {
        return None;
    }
    let (mut lat, mut lon) = ((-90.0_f64, 90.0_f64), (-180.0_f64, 180.0_f64));
    let mut even = true; // bits alternate, longitude first
    for b in geohash.bytes() {
        let value = ALPHABET.iter().position(|&a| a == b)?;
        for shift in (0..5).rev() {
            let bit = (value >> shift) & 1 == 1;
            let range = if even { &mut lon } else { &mut lat };
            let mid = (range.0 + range.1) / 2.0;
            if bit {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    Some(((lat.0 + lat.1) / 2.0, (lon.0 + lon.1) / 2.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions() {
        assert!(is_region("w5q6"));
        assert!(is_region("u33d"));
        for bad in [
            "", "w5q", "w5q6u", "W5Q6", "w5qa", "w5qi", "w5ql", "w5qo", "ก5q6",
        ] {
            assert!(!is_region(bad), "{bad}");
        }
    }

    #[test]
    fn points() {
        // The classic example: ezs42 ≈ (42.6, -5.6); at 6 characters:
        let (lat, lon) = point("ezs42e").expect("valid");
        assert!(
            (lat - 42.605).abs() < 0.01 && (lon - -5.603).abs() < 0.01,
            "{lat} {lon}"
        );
        // Berlin's Alexanderplatz is in u33dc1.
        let (lat, lon) = point("u33dc1").expect("valid");
        assert!(
            (lat - 52.52).abs() < 0.01 && (lon - 13.41).abs() < 0.02,
            "{lat} {lon}"
        );
        assert_eq!(point("u33d"), None);
        assert_eq!(point("u33dca"), None);
        assert_eq!(point("u33dcA"), None);
    }
}
