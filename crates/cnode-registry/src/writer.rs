//! Sending transactions to the registry with a local key.
//!
//! Every method estimates gas first, so a call the contract would refuse
//! comes back as [`TxError::Reverted`] with the decoded custom error before
//! anything is sent; otherwise it waits for the receipt and returns the
//! transaction hash and gas used. Not an actor: a `Writer` is a plain value;
//! nonces come from the RPC (pending count), so do not send from two writers
//! with the same key at once.

use std::time::Duration;

use alloy::{
    contract::{CallBuilder, CallDecoder},
    network::{EthereumWallet, TransactionBuilder},
    primitives::{Address, B256, Bytes, FixedBytes, U256},
    providers::{DynProvider, PendingTransactionError, Provider, ProviderBuilder, WatchTxError},
    rpc::types::{TransactionReceipt, TransactionRequest},
    signers::local::PrivateKeySigner,
    sol_types::SolEvent,
};
use cnode_types::RegionId;

use crate::{
    artifact::RegistryInit,
    bindings::ICnodeRegistry::{self, ICnodeRegistryInstance},
    revert::Revert,
    rpc::{Endpoint, RpcError, error_chain},
    types::{Params, ProposalAction},
};

/// Deadline of each JSON-RPC call the writer makes.
pub const WRITER_RPC_TIMEOUT: Duration = Duration::from_secs(10);
/// Default wait for a receipt.
pub const RECEIPT_TIMEOUT: Duration = Duration::from_secs(60);

/// A transaction could not be sent or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TxError {
    /// The registry refused the call (seen when estimating gas, or when
    /// replaying a failed transaction).
    #[error("{0}")]
    Reverted(Box<Revert>),
    /// The transaction was mined but failed, and replaying it gave no reason.
    #[error(
        "transaction {tx_hash} failed (used {gas_used} gas) and no revert reason could be found"
    )]
    Failed {
        /// The transaction.
        tx_hash: B256,
        /// Gas it used.
        gas_used: u64,
    },
    /// The RPC failed.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// No receipt came within the deadline; the transaction may still be mined.
    #[error("no receipt for transaction {tx_hash} within {after:?}")]
    ReceiptTimeout {
        /// The transaction.
        tx_hash: B256,
        /// The deadline.
        after: Duration,
    },
    /// The transaction succeeded but lacked the event its result comes from.
    #[error("transaction {tx_hash} succeeded but emitted no {event} event")]
    MissingEvent {
        /// The transaction.
        tx_hash: B256,
        /// The event looked for.
        event: &'static str,
    },
    /// A deployment succeeded without creating a contract.
    #[error("deployment {tx_hash} created no contract")]
    NotDeployed {
        /// The transaction.
        tx_hash: B256,
    },
    /// The artifact, arguments or signer could not be used.
    #[error("cannot build the transaction: {0}")]
    Build(String),
}

impl TxError {
    /// The registry's custom error, when the call reverted with one.
    pub fn registry_error(&self) -> Option<&crate::bindings::RegistryErrors> {
        match self {
            Self::Reverted(r) => r.error.as_ref(),
            _ => None,
        }
    }
}

/// A mined, successful transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxOutcome {
    /// The transaction hash.
    pub tx_hash: B256,
    /// Gas used.
    pub gas_used: u64,
    /// The block it was mined in.
    pub block_number: Option<u64>,
}

/// Sends registry transactions signed with one local key.
#[derive(Debug, Clone)]
pub struct Writer {
    registry: ICnodeRegistryInstance<DynProvider>,
    endpoint: Endpoint,
    sender: Address,
    receipt_timeout: Duration,
}

impl Writer {
    /// A writer for the registry at `address`, reached through `rpc_url`.
    /// Makes no call yet.
    pub fn new(rpc_url: &str, signer: PrivateKeySigner, address: Address) -> Result<Self, TxError> {
        let (provider, endpoint, sender) = connect(rpc_url, signer)?;
        Ok(Self {
            registry: ICnodeRegistry::new(address, provider),
            endpoint,
            sender,
            receipt_timeout: RECEIPT_TIMEOUT,
        })
    }

    /// Deploys a contract from `bytecode` followed by its ABI-encoded
    /// constructor arguments, waits for the receipt, and returns a writer
    /// for the new contract. Meant for devnets and tests.
    pub async fn deploy(
        rpc_url: &str,
        signer: PrivateKeySigner,
        bytecode: Bytes,
        constructor_args: Bytes,
    ) -> Result<(Self, TxOutcome), TxError> {
        let (provider, endpoint, sender) = connect(rpc_url, signer)?;
        let mut code = bytecode.to_vec();
        code.extend_from_slice(&constructor_args);
        let tx = TransactionRequest::default()
            .with_from(sender)
            .with_deploy_code(code);
        let pending = provider
            .send_transaction(tx.clone())
            .await
            .map_err(|e| revert_or_rpc(&endpoint, "eth_sendTransaction", e))?;
        let tx_hash = *pending.tx_hash();
        let receipt = pending
            .with_timeout(Some(RECEIPT_TIMEOUT))
            .get_receipt()
            .await
            .map_err(|e| pending_err(&endpoint, tx_hash, RECEIPT_TIMEOUT, e))?;
        let outcome = check_receipt(&provider, &endpoint, &receipt, tx).await?;
        let address = receipt
            .contract_address
            .ok_or(TxError::NotDeployed { tx_hash })?;
        let writer = Self {
            registry: ICnodeRegistry::new(address, provider),
            endpoint,
            sender,
            receipt_timeout: RECEIPT_TIMEOUT,
        };
        Ok((writer, outcome))
    }

    /// Deploys the embedded `CnodeRegistry` artifact with `init` (devnets
    /// and tests).
    pub async fn deploy_registry(
        rpc_url: &str,
        signer: PrivateKeySigner,
        init: &RegistryInit,
    ) -> Result<(Self, TxOutcome), TxError> {
        let bytecode =
            crate::artifact::registry_bytecode().map_err(|e| TxError::Build(e.to_string()))?;
        Self::deploy(rpc_url, signer, bytecode, init.encode()).await
    }

    /// Waits at most `timeout` for each receipt (default 60 s).
    pub fn with_receipt_timeout(mut self, timeout: Duration) -> Self {
        self.receipt_timeout = timeout;
        self
    }

    /// The registry contract.
    pub fn address(&self) -> Address {
        *self.registry.address()
    }

    /// The signer's address.
    pub fn sender(&self) -> Address {
        self.sender
    }

    /// The generated contract instance, for calls this type has no method for.
    pub fn contract(&self) -> &ICnodeRegistryInstance<DynProvider> {
        &self.registry
    }

    /// The current minimum stake (a read, no transaction).
    pub async fn min_stake(&self) -> Result<U256, TxError> {
        self.registry
            .minStake()
            .call()
            .await
            .map_err(|e| self.contract_err("eth_call", e))
    }

    /// Registers the signer as an operator, staking `stake` wei.
    pub async fn register(
        &self,
        stake: U256,
        peer_id: impl Into<Bytes>,
        multiaddrs: Vec<String>,
        regions: &[RegionId],
    ) -> Result<TxOutcome, TxError> {
        let call = self
            .registry
            .register(peer_id.into(), multiaddrs, packed(regions))
            .value(stake);
        Ok(self.send(call).await?.0)
    }

    /// Replaces the node's peer id, addresses and regions.
    pub async fn update(
        &self,
        peer_id: impl Into<Bytes>,
        multiaddrs: Vec<String>,
        regions: &[RegionId],
    ) -> Result<TxOutcome, TxError> {
        let call = self
            .registry
            .update(peer_id.into(), multiaddrs, packed(regions));
        Ok(self.send(call).await?.0)
    }

    /// Adds `amount` wei to the node's stake.
    pub async fn add_stake(&self, amount: U256) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.addStake().value(amount)).await?.0)
    }

    /// Leaves: the stake starts unbonding.
    pub async fn deregister(&self) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.deregister()).await?.0)
    }

    /// Takes the stake back after unbonding.
    pub async fn withdraw(&self) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.withdraw()).await?.0)
    }

    /// Steward: sets a region's ordered route.
    pub async fn set_route(
        &self,
        region: RegionId,
        operators: Vec<Address>,
    ) -> Result<TxOutcome, TxError> {
        let call = self.registry.setRoute(pack(region), operators);
        Ok(self.send(call).await?.0)
    }

    /// Steward: attests credit scores for `epoch`.
    pub async fn attest_credit(
        &self,
        epoch: u64,
        scores: &[(Address, u64)],
    ) -> Result<TxOutcome, TxError> {
        let (ops, values): (Vec<Address>, Vec<u64>) = scores.iter().copied().unzip();
        Ok(self
            .send(self.registry.attestCredit(epoch, ops, values))
            .await?
            .0)
    }

    /// Steward: approves a proposed service.
    pub async fn approve_service(&self, key: B256) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.approveService(key)).await?.0)
    }

    /// Steward: revokes a service.
    pub async fn revoke_service(&self, key: B256) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.revokeService(key)).await?.0)
    }

    /// Publisher: proposes a service; returns its key.
    pub async fn propose_service(
        &self,
        id: &str,
        version: &str,
        package_hash: B256,
        manifest_hash: B256,
    ) -> Result<(TxOutcome, B256), TxError> {
        let call = self.registry.proposeService(
            id.to_owned(),
            version.to_owned(),
            package_hash,
            manifest_hash,
        );
        let (outcome, receipt) = self.send(call).await?;
        let key = event::<ICnodeRegistry::ServiceProposed>(&receipt)
            .map(|e| e.key)
            .ok_or(TxError::MissingEvent {
                tx_hash: outcome.tx_hash,
                event: "ServiceProposed",
            })?;
        Ok((outcome, key))
    }

    /// Steward: proposes an m-of-n action (counts as this steward's
    /// approval); returns the proposal id.
    pub async fn propose(&self, action: &ProposalAction) -> Result<(TxOutcome, U256), TxError> {
        let (kind, data) = action.encode().ok_or_else(|| {
            TxError::Build(format!(
                "{action:?} is not a proposal kind of the interface"
            ))
        })?;
        let (outcome, receipt) = self.send(self.registry.propose(kind, data)).await?;
        let id = event::<ICnodeRegistry::ProposalCreated>(&receipt)
            .map(|e| e.proposalId)
            .ok_or(TxError::MissingEvent {
                tx_hash: outcome.tx_hash,
                event: "ProposalCreated",
            })?;
        Ok((outcome, id))
    }

    /// Proposes adding a steward.
    pub async fn propose_add_steward(
        &self,
        steward: Address,
    ) -> Result<(TxOutcome, U256), TxError> {
        self.propose(&ProposalAction::AddSteward { steward }).await
    }

    /// Proposes removing a steward.
    pub async fn propose_remove_steward(
        &self,
        steward: Address,
    ) -> Result<(TxOutcome, U256), TxError> {
        self.propose(&ProposalAction::RemoveSteward { steward })
            .await
    }

    /// Proposes a new approval threshold.
    pub async fn propose_set_threshold(
        &self,
        threshold: U256,
    ) -> Result<(TxOutcome, U256), TxError> {
        self.propose(&ProposalAction::SetThreshold { threshold })
            .await
    }

    /// Proposes slashing `amount` wei of an operator's stake.
    pub async fn propose_slash(
        &self,
        operator: Address,
        amount: U256,
        reason: &str,
    ) -> Result<(TxOutcome, U256), TxError> {
        self.propose(&ProposalAction::Slash {
            operator,
            amount,
            reason: reason.to_owned(),
        })
        .await
    }

    /// Proposes new parameters.
    pub async fn propose_set_params(&self, params: Params) -> Result<(TxOutcome, U256), TxError> {
        self.propose(&ProposalAction::SetParams { params }).await
    }

    /// Steward: approves a proposal.
    pub async fn approve(&self, proposal_id: U256) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.approve(proposal_id)).await?.0)
    }

    /// Executes a proposal that has enough approvals (anyone may).
    pub async fn execute(&self, proposal_id: U256) -> Result<TxOutcome, TxError> {
        Ok(self.send(self.registry.execute(proposal_id)).await?.0)
    }

    /// Sends `call`, waits for its receipt, and checks it succeeded.
    async fn send<D: CallDecoder>(
        &self,
        call: CallBuilder<&DynProvider, D>,
    ) -> Result<(TxOutcome, TransactionReceipt), TxError> {
        let request = call.as_ref().clone().with_from(self.sender);
        let pending = call
            .send()
            .await
            .map_err(|e| self.contract_err("eth_sendTransaction", e))?;
        let tx_hash = *pending.tx_hash();
        let receipt = pending
            .with_timeout(Some(self.receipt_timeout))
            .get_receipt()
            .await
            .map_err(|e| pending_err(&self.endpoint, tx_hash, self.receipt_timeout, e))?;
        let outcome =
            check_receipt(self.registry.provider(), &self.endpoint, &receipt, request).await?;
        Ok((outcome, receipt))
    }

    fn contract_err(&self, method: &'static str, e: alloy::contract::Error) -> TxError {
        use alloy::contract::Error as E;
        if let Some(data) = e.as_revert_data() {
            return TxError::Reverted(Box::new(Revert::decode(data)));
        }
        match e {
            E::TransportError(t) => revert_or_rpc(&self.endpoint, method, t),
            E::PendingTransactionError(p) => {
                pending_err(&self.endpoint, B256::ZERO, self.receipt_timeout, p)
            }
            other => TxError::Build(error_chain(&other)),
        }
    }
}

/// A provider that signs with `signer` and fills nonce, gas and chain id.
fn connect(
    rpc_url: &str,
    signer: PrivateKeySigner,
) -> Result<(DynProvider, Endpoint, Address), TxError> {
    let endpoint = Endpoint::parse(rpc_url, WRITER_RPC_TIMEOUT)?;
    let sender = signer.address();
    // Not `ProviderBuilder::new()`'s recommended fillers: their cached nonce
    // manager takes a nonce even when gas estimation then fails (a revert),
    // and the next transaction waits forever behind the gap. The simple
    // manager asks the RPC for the pending count each time.
    let provider = ProviderBuilder::new()
        .disable_recommended_fillers()
        .with_gas_estimation()
        .with_simple_nonce_management()
        .fetch_chain_id()
        .wallet(EthereumWallet::from(signer))
        .connect_client(endpoint.client()?)
        .erased();
    Ok((provider, endpoint, sender))
}

fn revert_or_rpc(
    endpoint: &Endpoint,
    method: &'static str,
    e: alloy::transports::TransportError,
) -> TxError {
    match endpoint.map_err(method, e) {
        RpcError::Server {
            data: Some(data), ..
        } => TxError::Reverted(Box::new(Revert::decode(data))),
        other => TxError::Rpc(other),
    }
}

fn pending_err(
    endpoint: &Endpoint,
    tx_hash: B256,
    after: Duration,
    e: PendingTransactionError,
) -> TxError {
    match e {
        PendingTransactionError::TransportError(t) => {
            revert_or_rpc(endpoint, "eth_getTransactionReceipt", t)
        }
        PendingTransactionError::TxWatcher(WatchTxError::Timeout) => {
            TxError::ReceiptTimeout { tx_hash, after }
        }
        other => TxError::Rpc(RpcError::Other {
            endpoint: endpoint.display.clone(),
            method: "eth_getTransactionReceipt",
            detail: error_chain(&other),
        }),
    }
}

/// The outcome of a receipt; a failed transaction is replayed at its block
/// to find the revert reason.
async fn check_receipt(
    provider: &DynProvider,
    endpoint: &Endpoint,
    receipt: &TransactionReceipt,
    request: TransactionRequest,
) -> Result<TxOutcome, TxError> {
    let outcome = TxOutcome {
        tx_hash: receipt.transaction_hash,
        gas_used: receipt.gas_used,
        block_number: receipt.block_number,
    };
    if receipt.status() {
        return Ok(outcome);
    }
    let mut replay = provider.call(request);
    if let Some(n) = receipt.block_number {
        replay = replay.block(n.into());
    }
    match endpoint.run("eth_call", async { replay.await }).await {
        Err(RpcError::Server {
            data: Some(data), ..
        }) => Err(TxError::Reverted(Box::new(Revert::decode(data)))),
        _ => Err(TxError::Failed {
            tx_hash: outcome.tx_hash,
            gas_used: outcome.gas_used,
        }),
    }
}

fn event<E: SolEvent>(receipt: &TransactionReceipt) -> Option<E> {
    receipt
        .inner
        .logs()
        .iter()
        .find_map(|l| l.log_decode::<E>().ok())
        .map(|l| l.inner.data)
}

/// A region as the contract's `bytes4`: its ASCII characters.
pub fn pack(region: RegionId) -> FixedBytes<4> {
    let mut b = [0u8; 4];
    b.copy_from_slice(region.as_str().as_bytes());
    FixedBytes(b)
}

fn packed(regions: &[RegionId]) -> Vec<FixedBytes<4>> {
    regions.iter().copied().map(pack).collect()
}

/// A service's key: `keccak256(id ‖ "@" ‖ version)`, as the contract's
/// `serviceKey` computes it.
pub fn service_key(id: &str, version: &str) -> B256 {
    alloy::primitives::keccak256(format!("{id}@{version}"))
}
