//! The compiled `CnodeRegistry` (`contracts/artifacts/CnodeRegistry.json`,
//! `{"abi": [...], "bytecode": "0x..."}`), embedded for devnets and tests.

use alloy::{
    json_abi::JsonAbi,
    primitives::{Address, Bytes, U256},
    sol_types::SolValue,
};
use serde::Deserialize;

use crate::types::Params;

/// The artifact JSON as committed.
pub const REGISTRY_ARTIFACT_JSON: &str =
    include_str!("../../../contracts/artifacts/CnodeRegistry.json");

#[derive(Deserialize)]
struct Artifact {
    abi: JsonAbi,
    bytecode: Bytes,
}

/// The artifact JSON does not parse (a broken commit of the artifact).
#[derive(Debug, Clone, thiserror::Error)]
#[error("contracts/artifacts/CnodeRegistry.json is not {{abi, bytecode}}: {0}")]
pub struct ArtifactError(String);

fn parse() -> Result<Artifact, ArtifactError> {
    serde_json::from_str(REGISTRY_ARTIFACT_JSON).map_err(|e| ArtifactError(e.to_string()))
}

/// The creation bytecode of `CnodeRegistry`.
pub fn registry_bytecode() -> Result<Bytes, ArtifactError> {
    parse().map(|a| a.bytecode)
}

/// The full ABI of `CnodeRegistry` (the interface plus its constants).
pub fn registry_abi() -> Result<JsonAbi, ArtifactError> {
    parse().map(|a| a.abi)
}

/// The constructor arguments of `CnodeRegistry`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryInit {
    /// The first stewards (1..=32).
    pub stewards: Vec<Address>,
    /// Approvals m-of-n proposals need (1..=stewards).
    pub threshold: U256,
    /// Minimum stake, unbonding delay and proposal lifetime.
    pub params: Params,
}

impl RegistryInit {
    /// ABI encoding of the arguments, as appended to the bytecode:
    /// `(address[] stewards, uint256 threshold, uint256 minStake,
    /// uint64 unbondingDelay, uint64 proposalTtl)`.
    pub fn encode(&self) -> Bytes {
        (
            self.stewards.clone(),
            self.threshold,
            self.params.min_stake,
            self.params.unbonding_delay,
            self.params.proposal_ttl,
        )
            .abi_encode_params()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use alloy::dyn_abi::{DynSolValue, JsonAbiExt};

    use super::*;

    #[test]
    fn artifact_parses_and_constructor_matches_the_encoding() {
        assert!(registry_bytecode().unwrap().len() > 1000);
        let abi = registry_abi().unwrap();
        let ctor = abi.constructor.as_ref().expect("constructor");
        let init = RegistryInit {
            stewards: vec![Address::repeat_byte(1), Address::repeat_byte(2)],
            threshold: U256::from(2),
            params: Params {
                min_stake: U256::from(10),
                unbonding_delay: 60,
                proposal_ttl: 3600,
            },
        };
        let values = ctor
            .abi_decode_input(&init.encode())
            .expect("decodes as the constructor's inputs");
        assert_eq!(values.len(), 5);
        assert_eq!(
            values[0],
            DynSolValue::Array(vec![
                DynSolValue::Address(Address::repeat_byte(1)),
                DynSolValue::Address(Address::repeat_byte(2)),
            ])
        );
        assert_eq!(values[4], DynSolValue::Uint(U256::from(3600), 64));
    }
}
