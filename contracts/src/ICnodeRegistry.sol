// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

/// @title Community Node registry — the interface nodes read and operators write.
/// @notice The chain holds what every node must agree on: which nodes exist and
/// what they staked, which nodes serve each region (the routing table), the
/// nodes' credit, and the list of services (the API list). Bulky node details
/// (peer id, multiaddrs, regions) live in events and as a hash in state, so a
/// registration stays cheap; clients rebuild the full picture from the log.
///
/// Regions are 4-character geohashes packed as ASCII into a `bytes4`
/// (e.g. "w5q6" = 0x77357136). Peer ids are the libp2p peer id's multihash
/// bytes. Service keys: see `serviceKey` (the formula is in the comment below;
/// NatSpec reads any at-sign as a tag, so it cannot sit in this block).
// Service key = keccak256(abi.encodePacked(id, "@", version)).
interface ICnodeRegistry {
    // ---------------------------------------------------------------- types

    enum NodeStatus { None, Active, Unbonding }

    struct NodeInfo {
        NodeStatus status;
        uint128 stake;           // wei held for this operator
        uint64 unbondingEnds;    // unix seconds; 0 unless Unbonding
        uint64 credit;           // latest accepted credit score (0..=1_000_000)
        uint64 creditEpoch;      // epoch of that score
        bytes32 infoHash;        // keccak256(abi.encode(peerId, multiaddrs, regions))
    }

    enum ServiceStatus { None, Proposed, Approved, Revoked }

    struct Service {
        ServiceStatus status;
        address publisher;
        bytes32 packageHash;     // BLAKE3 root of the package blob
        bytes32 manifestHash;    // BLAKE3 of plugin.toml
    }

    /// What an m-of-n proposal does; `data` is the ABI encoding of the arguments.
    enum ProposalKind {
        AddSteward,      // (address steward)
        RemoveSteward,   // (address steward)
        SetThreshold,    // (uint256 threshold)
        Slash,           // (address operator, uint256 amount, string reason)
        SetParams        // (uint256 minStake, uint64 unbondingDelay, uint64 proposalTtl)
    }

    // --------------------------------------------------------------- events

    event NodeRegistered(address indexed operator, bytes peerId, string[] multiaddrs, bytes4[] regions, uint256 stake);
    event NodeUpdated(address indexed operator, bytes peerId, string[] multiaddrs, bytes4[] regions);
    event StakeAdded(address indexed operator, uint256 amount, uint256 total);
    event NodeDeregistered(address indexed operator, uint64 unbondingEnds);
    event StakeWithdrawn(address indexed operator, uint256 amount);
    event Slashed(address indexed operator, uint256 amount, string reason);

    event RouteSet(bytes4 indexed region, address[] operators);

    event CreditAttested(uint64 indexed epoch, address indexed steward, address indexed operator, uint64 score);
    event CreditUpdated(address indexed operator, uint64 epoch, uint64 score);

    event ServiceProposed(bytes32 indexed key, string id, string version, bytes32 packageHash, bytes32 manifestHash, address publisher);
    event ServiceApproved(bytes32 indexed key, address steward);
    event ServiceRevoked(bytes32 indexed key, address steward);

    event ProposalCreated(uint256 indexed proposalId, ProposalKind kind, bytes data, address proposer, uint64 expiresAt);
    event ProposalApproved(uint256 indexed proposalId, address steward, uint256 approvals);
    event ProposalExecuted(uint256 indexed proposalId);

    event StewardAdded(address indexed steward);
    event StewardRemoved(address indexed steward);
    event ThresholdChanged(uint256 threshold);
    event ParamsChanged(uint256 minStake, uint64 unbondingDelay, uint64 proposalTtl);

    // --------------------------------------------------------------- errors

    error StakeTooLow(uint256 sent, uint256 minStake);
    error AlreadyRegistered(address operator);
    error NotRegistered(address operator);
    error NotActive(address operator);
    error StillUnbonding(uint64 unbondingEnds);
    error NothingToWithdraw();
    error BadRegion(bytes4 region);
    error TooMany(string what, uint256 given, uint256 max);
    error TooLong(string what, uint256 given, uint256 max);
    error EmptyPeerId();
    error NotSteward(address caller);
    error AlreadyApproved(uint256 proposalId, address steward);
    error UnknownProposal(uint256 proposalId);
    error ProposalExpired(uint256 proposalId);
    error ProposalStale(uint256 proposalId);   // the steward set changed after it was made
    error AlreadyExecuted(uint256 proposalId);
    error NotEnoughApprovals(uint256 have, uint256 need);
    error BadThreshold(uint256 threshold, uint256 stewards);
    error BadServiceId(string id);
    error ServiceExists(bytes32 key);
    error UnknownService(bytes32 key);
    error BadScore(uint64 score);
    error BadEpoch(uint64 epoch);
    error LengthMismatch();
    error TransferFailed();
    // Added with the implementation (the declarations above are unchanged):
    error Empty(string what);                                   // an empty list or string that must not be
    error BadParam(string what, uint256 value);                 // a steward address or parameter out of range
    error AlreadySteward(address steward);
    error DuplicateOperator(address operator);                  // twice in one route
    error AlreadyAttested(uint64 epoch, address steward, address operator);
    error SlashTooLarge(uint256 amount, uint256 stake);
    error BadServiceStatus(bytes32 key, ServiceStatus status);  // approve an Approved / revoke a Revoked service

    // ---------------------------------------------------------- operators

    /// Register msg.sender as a node operator. `msg.value` >= minStake.
    /// At most 8 multiaddrs of at most 256 bytes, 1..=16 regions, peer id 1..=64 bytes.
    function register(bytes calldata peerId, string[] calldata multiaddrs, bytes4[] calldata regions) external payable;
    /// Replace the node's peer id, addresses and regions (same limits). Active nodes only.
    function update(bytes calldata peerId, string[] calldata multiaddrs, bytes4[] calldata regions) external;
    /// Add to an active node's stake.
    function addStake() external payable;
    /// Leave: the node stops being Active, the stake unbonds for `unbondingDelay` seconds.
    function deregister() external;
    /// After unbonding, send the remaining stake back to the operator and forget the node.
    function withdraw() external;

    // ------------------------------------------------------------ stewards

    /// Set a region's ordered list of service nodes (at most 32, each Active). Any steward.
    function setRoute(bytes4 region, address[] calldata operators) external;
    /// Attest credit scores (0..=1_000_000) for `epoch`. Any steward, once per (epoch, operator).
    /// When `threshold` stewards have attested, the median becomes the node's credit.
    function attestCredit(uint64 epoch, address[] calldata operators, uint64[] calldata scores) external;
    function approveService(bytes32 key) external;
    function revokeService(bytes32 key) external;

    /// m-of-n: any steward proposes (counts as its approval), others approve,
    /// anyone executes once `threshold` approvals are in and before `expiresAt`.
    function propose(ProposalKind kind, bytes calldata data) external returns (uint256 proposalId);
    function approve(uint256 proposalId) external;
    function execute(uint256 proposalId) external;

    // ----------------------------------------------------------- publishers

    /// Propose a service. `id` is reverse-domain (e.g. "org.cnode.events"), lowercase
    /// [a-z0-9-] labels separated by dots, 2..=8 labels, <= 128 bytes; version <= 32 bytes.
    function proposeService(string calldata id, string calldata version, bytes32 packageHash, bytes32 manifestHash)
        external returns (bytes32 key);

    // ---------------------------------------------------------------- reads

    function getNode(address operator) external view returns (NodeInfo memory);
    function getRoute(bytes4 region) external view returns (address[] memory);
    function getService(bytes32 key) external view returns (Service memory);
    function serviceKey(string calldata id, string calldata version) external pure returns (bytes32);
    function stewards() external view returns (address[] memory);
    function isSteward(address who) external view returns (bool);
    function threshold() external view returns (uint256);
    function minStake() external view returns (uint256);
    function unbondingDelay() external view returns (uint64);
    function proposalTtl() external view returns (uint64);
    function totalStake() external view returns (uint256);
    /// Block the registry was deployed in: clients read the log from here.
    function deployBlock() external view returns (uint256);

    // Added with the implementation (the declarations above are unchanged):

    /// A proposal as stored; `generation` is the steward-set generation it was made in.
    struct Proposal {
        ProposalKind kind;
        bool executed;
        uint8 approvals;
        uint64 expiresAt;
        uint64 generation;
        address proposer;
        bytes data;
    }

    /// Seconds per credit epoch (1 day); epoch = block.timestamp / EPOCH_LENGTH.
    function EPOCH_LENGTH() external view returns (uint64);
    function currentEpoch() external view returns (uint64);
    /// Slashed wei, locked in the contract: balance == totalStake + slashedPool.
    function slashedPool() external view returns (uint256);
    /// Bumped by every steward-set or threshold change; older proposals are stale.
    function stewardGeneration() external view returns (uint64);
    /// Number of proposals made; ids are 1..=proposalCount.
    function proposalCount() external view returns (uint256);
    function getProposal(uint256 proposalId) external view returns (Proposal memory);
    function hasApproved(uint256 proposalId, address steward) external view returns (bool);
    /// Scores attested for (epoch, operator) under the current steward generation, in arrival order.
    function getAttestations(uint64 epoch, address operator) external view returns (uint64[] memory);
    function hasAttested(uint64 epoch, address steward, address operator) external view returns (bool);
}
