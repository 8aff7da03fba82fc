//! Reverts decoded with the interface's custom errors and printed with their
//! argument names: `StakeTooLow(sent 1, minStake 1000000000000000000)`.

use std::fmt;

use alloy::{
    dyn_abi::{DynSolValue, ErrorExt},
    primitives::Bytes,
    sol_types::{SolError, SolInterface},
};

use crate::bindings::{ICnodeRegistry, RegistryErrors};

/// A registry call or transaction reverted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revert {
    /// The interface's custom error, when the revert data is one.
    pub error: Option<RegistryErrors>,
    /// The revert, readable: the custom error with its arguments, a Solidity
    /// `Error(string)` / `Panic(uint)`, or the raw data.
    pub message: String,
    /// The raw revert data.
    pub data: Bytes,
}

impl Revert {
    /// Decodes revert data.
    pub fn decode(data: Bytes) -> Self {
        let error = RegistryErrors::abi_decode(&data).ok();
        let message = describe(&data);
        Self {
            error,
            message,
            data,
        }
    }
}

impl fmt::Display for Revert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "registry reverted: {}", self.message)
    }
}

fn describe(data: &[u8]) -> String {
    if data.is_empty() {
        return "no reason given".into();
    }
    if data.len() >= 4 {
        let abi = ICnodeRegistry::abi::contract();
        for e in abi.errors.values().flatten() {
            if e.selector().as_slice() != &data[..4] {
                continue;
            }
            if let Ok(decoded) = e.decode_error(data) {
                let args: Vec<String> = e
                    .inputs
                    .iter()
                    .zip(&decoded.body)
                    .map(|(p, v)| {
                        if p.name.is_empty() {
                            value(v)
                        } else {
                            format!("{} {}", p.name, value(v))
                        }
                    })
                    .collect();
                return format!("{}({})", e.name, args.join(", "));
            }
        }
    }
    let solidity = [
        alloy::sol_types::Revert::SELECTOR,
        alloy::sol_types::Panic::SELECTOR,
    ];
    if data.len() >= 4
        && solidity.iter().any(|s| s[..] == data[..4])
        && let Some(reason) = alloy::sol_types::decode_revert_reason(data)
    {
        return reason;
    }
    format!("unknown error data 0x{}", alloy::hex::encode(data))
}

/// One value as a person would write it: decimal numbers, checksummed
/// addresses, `bytes4` regions with their text.
fn value(v: &DynSolValue) -> String {
    match v {
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Int(i, _) => i.to_string(),
        DynSolValue::Uint(u, _) => u.to_string(),
        DynSolValue::Address(a) => a.to_checksum(None),
        DynSolValue::FixedBytes(w, n) => {
            let bytes = &w[..*n];
            let hex = format!("0x{}", alloy::hex::encode(bytes));
            match std::str::from_utf8(bytes) {
                Ok(s) if *n <= 8 && s.chars().all(|c| c.is_ascii_graphic()) => {
                    format!("{hex} ({s:?})")
                }
                _ => hex,
            }
        }
        DynSolValue::Bytes(b) => format!("0x{}", alloy::hex::encode(b)),
        DynSolValue::String(s) => format!("{s:?}"),
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) | DynSolValue::Tuple(items) => {
            format!(
                "[{}]",
                items.iter().map(value).collect::<Vec<_>>().join(", ")
            )
        }
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use alloy::{
        primitives::{FixedBytes, U256},
        sol_types::SolError,
    };

    use super::*;

    #[test]
    fn custom_errors_print_with_names() {
        let data = ICnodeRegistry::StakeTooLow {
            sent: U256::from(1),
            minStake: U256::from(10).pow(U256::from(18)),
        }
        .abi_encode();
        let r = Revert::decode(data.into());
        assert_eq!(
            r.to_string(),
            "registry reverted: StakeTooLow(sent 1, minStake 1000000000000000000)"
        );
        assert!(matches!(r.error, Some(RegistryErrors::StakeTooLow(_))));

        let data = ICnodeRegistry::BadRegion {
            region: FixedBytes(*b"w5qa"),
        }
        .abi_encode();
        assert_eq!(
            Revert::decode(data.into()).message,
            r#"BadRegion(region 0x77357161 ("w5qa"))"#
        );
        let data = ICnodeRegistry::NothingToWithdraw {}.abi_encode();
        assert_eq!(Revert::decode(data.into()).message, "NothingToWithdraw()");
    }

    #[test]
    fn other_reverts_are_readable() {
        assert_eq!(Revert::decode(Bytes::new()).message, "no reason given");
        let r = Revert::decode(Bytes::from_static(&[1, 2, 3, 4, 5]));
        assert_eq!(r.message, "unknown error data 0x0102030405");
        assert_eq!(r.error, None);
        let data = alloy::sol_types::Revert::from("nope").abi_encode();
        assert!(Revert::decode(data.into()).message.contains("nope"));
    }
}
