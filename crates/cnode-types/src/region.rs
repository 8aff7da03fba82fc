//! Regions: a 4-character geohash cell (≈ 39 × 20 km).

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};

/// The geohash base-32 alphabet (no `a`, `i`, `l`, `o`).
const GEOHASH_ALPHABET: &str = "0123456789bcdefghjkmnpqrstuvwxyz";

/// A region: a geohash cell of exactly four characters, e.g. `w5q6` (Chiang Mai).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RegionId([u8; 4]);

/// Why a string is not a region id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegionIdError {
    /// The region is not exactly four characters long.
    #[error("a region is a 4-character geohash (e.g. w5q6), got {0} characters")]
    Length(usize),
    /// A character outside the geohash alphabet.
    #[error("{0:?} is not a geohash character (allowed: 0-9 and b-z without a, i, l, o)")]
    Char(char),
}

impl RegionId {
    /// The region as a string slice.
    pub fn as_str(&self) -> &str {
        // Only ASCII from GEOHASH_ALPHABET is ever stored.
        std::str::from_utf8(&self.0).unwrap_or("????")
    }

    /// The gossipsub topic of this region.
    pub fn topic(&self) -> String {
        format!("cnode/1/region/{}", self.as_str())
    }
}

impl FromStr for RegionId {
    type Err = RegionIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let n = s.chars().count();
        if n != 4 {
            return Err(RegionIdError::Length(n));
        }
        let mut out = [0u8; 4];
        for (i, c) in s.chars().enumerate() {
            let c = c.to_ascii_lowercase();
            if !GEOHASH_ALPHABET.contains(c) {
                return Err(RegionIdError::Char(c));
            }
            out[i] = c as u8;
        }
        Ok(Self(out))
    }
}

impl TryFrom<String> for RegionId {
    type Error = RegionIdError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl From<RegionId> for String {
    fn from(r: RegionId) -> Self {
        r.as_str().to_owned()
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_known_regions() {
        for r in ["w5q6", "w4rq", "w21z", "W5Q6"] {
            let id: RegionId = r.parse().unwrap();
            assert_eq!(id.as_str(), r.to_ascii_lowercase());
        }
        assert_eq!(
            "w5q6".parse::<RegionId>().unwrap().topic(),
            "cnode/1/region/w5q6"
        );
    }

    #[test]
    fn rejects_bad_regions() {
        assert_eq!("w5q".parse::<RegionId>(), Err(RegionIdError::Length(3)));
        assert_eq!("w5q6x".parse::<RegionId>(), Err(RegionIdError::Length(5)));
        assert_eq!("w5qa".parse::<RegionId>(), Err(RegionIdError::Char('a')));
        assert_eq!("w5qé".parse::<RegionId>(), Err(RegionIdError::Char('é')));
    }

    #[test]
    fn serde_round_trip() {
        let id: RegionId = "w5q6".parse().unwrap();
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"w5q6\"");
        assert_eq!(serde_json::from_str::<RegionId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<RegionId>("\"w5qo\"").is_err());
    }
}
