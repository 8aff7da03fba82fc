//! What registry commands read from the command line (amounts of ether,
//! addresses, 32-byte hashes, regions) and the short forms they print.

use alloy::primitives::{
    Address, B256, U256,
    utils::{ParseUnits, Unit},
};
use anyhow::{Result, anyhow, bail};
use cnode_types::{BlobHash, RegionId};

/// Parses an amount of ether: `1.5eth`, `1.5 ether`, `250000gwei`,
/// `1000wei`, or a bare number of ETH (`2` = 2 ETH). Any unit alloy knows
/// works (`finney`, `szabo`, …); more decimals than the unit allows are an
/// error, not silently cut.
pub(crate) fn parse_amount(text: &str) -> Result<U256> {
    let t = text.trim();
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let (num, unit_text) = (num.trim(), unit.trim());
    let unit = if unit_text.is_empty() {
        Unit::ETHER
    } else {
        unit_text
            .parse::<Unit>()
            .map_err(|_| anyhow!("{text:?}: unknown unit {unit_text:?} (use eth, gwei or wei)"))?
    };
    let well_formed = !num.is_empty()
        && num != "."
        && num.matches('.').count() <= 1
        && num.chars().all(|c| c.is_ascii_digit() || c == '.');
    if !well_formed {
        bail!("{text:?} is not an amount (e.g. 1.5eth, 250000gwei, 1000wei; a bare number is ETH)");
    }
    let decimals = num.split_once('.').map_or(0, |(_, frac)| frac.len());
    if decimals > usize::from(unit.get()) {
        bail!(
            "{text:?} has more decimals than {} allows",
            if unit_text.is_empty() {
                "eth"
            } else {
                unit_text
            }
        );
    }
    ParseUnits::parse_units(num, unit)
        .map(<U256 as From<ParseUnits>>::from)
        .map_err(|e| anyhow!("{text:?} is not an amount: {e}"))
}

/// Wei as ether, without trailing zeros: `1 ETH`, `0.5 ETH`.
pub(crate) fn eth(wei: U256) -> String {
    let text = alloy::primitives::utils::format_ether(wei);
    let text = match text.split_once('.') {
        Some((int, frac)) if frac.trim_end_matches('0').is_empty() => int.to_owned(),
        Some((int, frac)) => format!("{int}.{}", frac.trim_end_matches('0')),
        None => text,
    };
    format!("{text} ETH")
}

/// A decimal wei string (as the API sends stakes) as ether; the string
/// itself if it is not a number.
pub(crate) fn eth_of_decimal(wei: &str) -> String {
    wei.parse::<U256>().map_or_else(|_| wei.to_owned(), eth)
}

/// `0x5FbD…0aa3`.
pub(crate) fn short_address(address: &str) -> String {
    shorten(address, 6, 4)
}

/// `12D3KooW…x7Qm9a`.
pub(crate) fn short_peer(peer: &str) -> String {
    shorten(peer, 8, 6)
}

fn shorten(s: &str, head: usize, tail: usize) -> String {
    let n = s.chars().count();
    if n <= head + tail + 1 {
        return s.to_owned();
    }
    let start: String = s.chars().take(head).collect();
    let end: String = s.chars().skip(n - tail).collect();
    format!("{start}…{end}")
}

/// An Ethereum address, `0x` + 40 hex digits (any case).
pub(crate) fn parse_address(what: &str, text: &str) -> Result<Address> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    if hex.len() != 40 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{what} {text:?} is not an address (0x followed by 40 hex digits)");
    }
    t.parse()
        .map_err(|e| anyhow!("{what} {text:?} is not an address: {e}"))
}

/// A 32-byte hash: 64 hex digits (`0x` optional), or a blob CID (`bafkr4…`)
/// for BLAKE3 hashes of packages.
pub(crate) fn parse_hash(what: &str, text: &str) -> Result<B256> {
    let t = text.trim();
    let hex = t.strip_prefix("0x").unwrap_or(t);
    if hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return hex
            .parse()
            .map_err(|e| anyhow!("{what} {text:?} is not a 32-byte hash: {e}"));
    }
    match t.parse::<BlobHash>() {
        Ok(h) => Ok(B256::from(*h.as_bytes())),
        Err(_) => bail!("{what} {text:?} is not a 32-byte hash (64 hex digits, or a bafkr4… CID)"),
    }
}

/// A region, `w5q6`.
pub(crate) fn parse_region(text: &str) -> Result<RegionId> {
    text.parse().map_err(|e| anyhow!("region {text:?}: {e}"))
}

/// A proposal id (a decimal number).
pub(crate) fn parse_proposal_id(text: &str) -> Result<U256> {
    text.trim()
        .parse::<u64>()
        .map(U256::from)
        .map_err(|_| anyhow!("proposal id {text:?} is not a number"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wei(s: &str) -> U256 {
        s.parse().unwrap()
    }

    #[test]
    fn amounts_in_every_spelling() {
        let one_and_a_half = wei("1500000000000000000");
        for text in [
            "1.5eth",
            "1.5 ether",
            "1.5",
            "1.5ETH",
            " 1.5 eth ",
            "1500finney",
        ] {
            assert_eq!(parse_amount(text).unwrap(), one_and_a_half, "{text}");
        }
        assert_eq!(parse_amount("250000gwei").unwrap(), wei("250000000000000"));
        assert_eq!(parse_amount("1000wei").unwrap(), wei("1000"));
        assert_eq!(parse_amount("0.1eth").unwrap(), wei("100000000000000000"));
        assert_eq!(parse_amount(".5").unwrap(), wei("500000000000000000"));
        assert_eq!(parse_amount("2").unwrap(), wei("2000000000000000000"));
        for bad in [
            "",
            "eth",
            "-1",
            "1.5.2",
            "1,5",
            "1e18",
            "1.5 wei",
            "1 bananas",
            ".",
        ] {
            assert!(parse_amount(bad).is_err(), "{bad:?} parsed");
        }
        let err = parse_amount("1.5wei").unwrap_err().to_string();
        assert!(err.contains("decimals"), "{err}");
        let err = parse_amount("3 dogecoin").unwrap_err().to_string();
        assert!(err.contains("unknown unit"), "{err}");
    }

    #[test]
    fn ether_is_printed_without_trailing_zeros() {
        assert_eq!(eth(wei("1000000000000000000")), "1 ETH");
        assert_eq!(eth(wei("500000000000000000")), "0.5 ETH");
        assert_eq!(eth(U256::ZERO), "0 ETH");
        assert_eq!(eth(wei("1")), "0.000000000000000001 ETH");
        assert_eq!(eth_of_decimal("2500000000000000000"), "2.5 ETH");
        assert_eq!(eth_of_decimal("lots"), "lots");
    }

    #[test]
    fn short_forms() {
        assert_eq!(
            short_address("0x5FbDB2315678afecb367f032d93F642f64180aa3"),
            "0x5FbD…0aa3"
        );
        assert_eq!(
            short_peer("12D3KooWGzBj7wz2sUZXZ4VqHgXGz4hQ2WpWqvkh8vX5c6B2Jm4u"),
            "12D3KooW…B2Jm4u"
        );
        assert_eq!(short_peer("short"), "short");
    }

    #[test]
    fn addresses_hashes_and_regions() {
        let a = parse_address("operator", "0x70997970c51812dc3a010c7d01b50e0d17dc79c8").unwrap();
        assert_eq!(a.to_string(), "0x70997970C51812dc3A010C7d01b50e0d17dc79C8");
        assert!(parse_address("operator", "0x1234").is_err());
        assert!(parse_address("operator", "alice").is_err());

        let h = "11".repeat(32);
        assert_eq!(
            parse_hash("--package", &h).unwrap(),
            B256::repeat_byte(0x11)
        );
        assert_eq!(
            parse_hash("--package", &format!("0x{h}")).unwrap(),
            B256::repeat_byte(0x11)
        );
        let cid = BlobHash::from_bytes([7; 32]).to_string();
        assert_eq!(parse_hash("--package", &cid).unwrap(), B256::repeat_byte(7));
        let err = parse_hash("--manifest", "abc").unwrap_err().to_string();
        assert!(
            err.contains("--manifest") && err.contains("32-byte"),
            "{err}"
        );

        assert_eq!(parse_region("W5Q6").unwrap().as_str(), "w5q6");
        assert!(parse_region("w5q").is_err());
        assert_eq!(parse_proposal_id("3").unwrap(), U256::from(3));
        assert!(parse_proposal_id("x").is_err());
    }
}
