// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {ICnodeRegistry} from "./ICnodeRegistry.sol";

/// @title Community Node registry.
/// @notice Implements {ICnodeRegistry}. See contracts/README.md for the design:
/// node details live in events (state keeps their hash), m-of-n steward
/// proposals go stale when the steward set or threshold changes, slashed stake
/// is locked in `slashedPool`, and credit is the median of steward attestations.
/// @dev Invariant (absent forced ether): address(this).balance == totalStake + slashedPool,
/// and totalStake == the sum of every node's stake.
contract CnodeRegistry is ICnodeRegistry {
    // ------------------------------------------------------------ limits

    uint256 public constant MAX_STEWARDS = 32;
    uint256 public constant MAX_ROUTE = 32;
    uint256 public constant MAX_PEER_ID = 64;
    uint256 public constant MAX_MULTIADDRS = 8;
    uint256 public constant MAX_MULTIADDR_LEN = 256;
    uint256 public constant MAX_REGIONS = 16;
    uint256 public constant MAX_ATTEST_BATCH = 256;
    uint256 public constant MAX_SCORE = 1_000_000;
    uint256 public constant MAX_SERVICE_ID = 128;
    uint256 public constant MIN_SERVICE_LABELS = 2;
    uint256 public constant MAX_SERVICE_LABELS = 8;
    uint256 public constant MAX_VERSION = 32;
    uint256 public constant MAX_REASON = 256;
    /// Upper bound for `unbondingDelay` and `proposalTtl`.
    uint64 public constant MAX_DELAY = 365 days;
    uint64 public constant EPOCH_LENGTH = 1 days;

    /// Bit c is set when ASCII byte c is in the geohash base32 alphabet
    /// (0-9, b-h, j, k, m, n, p-z: no a, i, l, o).
    uint256 private constant GEOHASH_CHARS = (((1 << 10) - 1) << 0x30) // 0-9
        | (((1 << 7) - 1) << 0x62) // b-h
        | (1 << 0x6a) | (1 << 0x6b) // j k
        | (1 << 0x6d) | (1 << 0x6e) // m n
        | (((1 << 11) - 1) << 0x70); // p-z

    // ------------------------------------------------------------- state

    /// One storage slot (240 bits) plus the info hash: register writes two slots.
    struct Node {
        NodeStatus status; //    8
        uint128 stake; //      128
        uint40 unbondingEnds; // 40 (unix seconds; year 36812)
        uint32 credit; //       32 (<= 1_000_000)
        uint32 creditEpoch; //  32 (days since 1970)
        bytes32 infoHash;
    }

    /// A proposal's fixed part fits one slot (20 + 1 + 1 + 1 + 5 + 4 bytes).
    struct StoredProposal {
        address proposer;
        ProposalKind kind;
        bool executed;
        uint8 approvals; //    <= MAX_STEWARDS
        uint40 expiresAt; //   unix seconds
        uint32 generation; //  one step per executed steward-set or threshold change
        bytes data;
    }

    /// Credit attestations for one (epoch, operator) are packed in three words:
    /// word 0 = count (8 bits) | generation (32) | steward bitmap (32) | scores 0..8;
    /// words 1 and 2 = scores 9..20 and 21..32; 20 bits per score (MAX_SCORE < 2^20).
    /// The bitmap is indexed by the steward's position in `_stewards`, which is
    /// fixed within a generation; attestations from an older generation are
    /// discarded (as older proposals go stale), so at most MAX_STEWARDS count.
    uint256 private constant SCORE_BITS = 20;
    uint256 private constant SCORE_MASK = (1 << SCORE_BITS) - 1;
    uint256 private constant HEAD_SCORES = 9;
    uint256 private constant WORD_SCORES = 12;
    uint256 private constant GEN_SHIFT = 8;
    uint256 private constant MAP_SHIFT = 40;
    uint256 private constant SCORES_SHIFT = 72;

    mapping(address => Node) private _nodes;
    mapping(bytes4 => address[]) private _routes;
    mapping(bytes32 => Service) private _services;

    address[] private _stewards;
    /// steward => index in _stewards + 1 (0 = not a steward).
    mapping(address => uint256) private _stewardSlot;
    uint256 public threshold;
    uint32 private _generation;

    uint256 public proposalCount;
    mapping(uint256 => StoredProposal) private _proposals;
    mapping(uint256 => mapping(address => bool)) public hasApproved;

    mapping(uint64 => mapping(address => uint256[3])) private _tallies;

    uint256 public minStake;
    uint64 public unbondingDelay;
    uint64 public proposalTtl;

    uint256 public totalStake;
    uint256 public slashedPool;
    uint256 public immutable deployBlock;

    // -------------------------------------------------------- construction

    constructor(
        address[] memory stewards_,
        uint256 threshold_,
        uint256 minStake_,
        uint64 unbondingDelay_,
        uint64 proposalTtl_
    ) {
        uint256 n = stewards_.length;
        if (n == 0) revert Empty("stewards");
        if (n > MAX_STEWARDS) revert TooMany("stewards", n, MAX_STEWARDS);
        for (uint256 i; i < n; ++i) {
            address s = stewards_[i];
            if (s == address(0)) revert BadParam("steward", 0);
            if (_stewardSlot[s] != 0) revert AlreadySteward(s);
            _stewards.push(s);
            _stewardSlot[s] = i + 1;
            emit StewardAdded(s);
        }
        if (threshold_ == 0 || threshold_ > n) revert BadThreshold(threshold_, n);
        threshold = threshold_;
        emit ThresholdChanged(threshold_);
        _setParams(minStake_, unbondingDelay_, proposalTtl_);
        deployBlock = block.number;
    }

    modifier onlySteward() {
        if (_stewardSlot[msg.sender] == 0) revert NotSteward(msg.sender);
        _;
    }

    // ---------------------------------------------------------- operators

    /// @inheritdoc ICnodeRegistry
    function register(bytes calldata peerId, string[] calldata multiaddrs, bytes4[] calldata regions)
        external
        payable
    {
        Node storage node = _nodes[msg.sender];
        if (node.status != NodeStatus.None) revert AlreadyRegistered(msg.sender);
        if (msg.value < minStake) revert StakeTooLow(msg.value, minStake);
        if (msg.value > type(uint128).max) revert BadParam("stake", msg.value);
        _checkDetails(peerId, multiaddrs, regions);

        node.status = NodeStatus.Active;
        node.stake = uint128(msg.value);
        node.infoHash = keccak256(abi.encode(peerId, multiaddrs, regions));
        totalStake += msg.value;
        emit NodeRegistered(msg.sender, peerId, multiaddrs, regions, msg.value);
    }

    /// @inheritdoc ICnodeRegistry
    function update(bytes calldata peerId, string[] calldata multiaddrs, bytes4[] calldata regions) external {
        Node storage node = _activeNode(msg.sender);
        _checkDetails(peerId, multiaddrs, regions);
        node.infoHash = keccak256(abi.encode(peerId, multiaddrs, regions));
        emit NodeUpdated(msg.sender, peerId, multiaddrs, regions);
    }

    /// @inheritdoc ICnodeRegistry
    function addStake() external payable {
        Node storage node = _activeNode(msg.sender);
        if (msg.value == 0) revert StakeTooLow(0, 1);
        uint256 total = uint256(node.stake) + msg.value;
        if (total > type(uint128).max) revert BadParam("stake", total);
        // forge-lint: disable-next-line(unsafe-typecast) -- checked against type(uint128).max just above
        node.stake = uint128(total);
        totalStake += msg.value;
        emit StakeAdded(msg.sender, msg.value, total);
    }

    /// @inheritdoc ICnodeRegistry
    function deregister() external {
        Node storage node = _activeNode(msg.sender);
        uint64 ends = uint64(block.timestamp) + unbondingDelay;
        node.status = NodeStatus.Unbonding;
        // forge-lint: disable-next-line(unsafe-typecast) -- ends <= now + MAX_DELAY (365 days): fits uint40 until the year 36812
        node.unbondingEnds = uint40(ends);
        emit NodeDeregistered(msg.sender, ends);
    }

    /// @inheritdoc ICnodeRegistry
    /// @dev A node slashed to zero is still forgotten here (and StakeWithdrawn(0) emitted).
    function withdraw() external {
        Node storage node = _nodes[msg.sender];
        NodeStatus status = node.status;
        if (status == NodeStatus.None) revert NotRegistered(msg.sender);
        if (status != NodeStatus.Unbonding) revert NothingToWithdraw();
        uint64 ends = node.unbondingEnds;
        if (block.timestamp < ends) revert StillUnbonding(ends);

        // Checks-effects-interactions: forget the node before paying.
        uint256 amount = node.stake;
        delete _nodes[msg.sender];
        totalStake -= amount;
        emit StakeWithdrawn(msg.sender, amount);
        if (amount != 0) {
            (bool ok,) = payable(msg.sender).call{value: amount}("");
            if (!ok) revert TransferFailed();
        }
    }

    // ------------------------------------------------------------ stewards

    /// @inheritdoc ICnodeRegistry
    /// @dev Nodes that deregister later stay in stored routes until a steward
    /// sets the route again; clients skip operators that are not Active.
    function setRoute(bytes4 region, address[] calldata operators) external onlySteward {
        _checkRegion(region);
        uint256 n = operators.length;
        if (n > MAX_ROUTE) revert TooMany("operators", n, MAX_ROUTE);
        for (uint256 i; i < n; ++i) {
            address op = operators[i];
            NodeStatus status = _nodes[op].status;
            if (status == NodeStatus.None) revert NotRegistered(op);
            if (status != NodeStatus.Active) revert NotActive(op);
            for (uint256 j; j < i; ++j) {
                if (operators[j] == op) revert DuplicateOperator(op);
            }
        }
        _routes[region] = operators;
        emit RouteSet(region, operators);
    }

    /// @inheritdoc ICnodeRegistry
    /// @dev Epoch rule: `epoch` is current or the one before
    /// (currentEpoch() - 1 <= epoch <= currentEpoch()), and not older than the
    /// operator's accepted creditEpoch (equal is allowed: more attestations for
    /// the accepted epoch refine its median). The operator must be registered.
    /// Once `threshold` scores are in, the node's credit is their lower median,
    /// recomputed on every later attestation for that epoch.
    function attestCredit(uint64 epoch, address[] calldata operators, uint64[] calldata scores)
        external
        onlySteward
    {
        uint256 n = operators.length;
        if (n != scores.length) revert LengthMismatch();
        if (n == 0) revert Empty("operators");
        if (n > MAX_ATTEST_BATCH) revert TooMany("operators", n, MAX_ATTEST_BATCH);
        uint64 now_ = uint64(block.timestamp / EPOCH_LENGTH);
        if (epoch > now_ || epoch + 1 < now_) revert BadEpoch(epoch);
        uint256 need = threshold;
        uint256 bit = 1 << (_stewardSlot[msg.sender] - 1);
        for (uint256 i; i < n; ++i) {
            _attest(epoch, operators[i], scores[i], need, bit);
        }
    }

    function _attest(uint64 epoch, address op, uint64 score, uint256 need, uint256 bit) private {
        if (score > MAX_SCORE) revert BadScore(score);
        Node storage node = _nodes[op];
        if (node.status == NodeStatus.None) revert NotRegistered(op);
        if (epoch < node.creditEpoch) revert BadEpoch(epoch);

        uint256[3] storage tally = _tallies[epoch][op];
        uint256 head = tally[0];
        uint256 gen = _generation;
        // Attestations made under an older steward generation no longer count.
        if ((head >> GEN_SHIFT) & type(uint32).max != gen) head = gen << GEN_SHIFT;
        if (head & (bit << MAP_SHIFT) != 0) revert AlreadyAttested(epoch, msg.sender, op);
        uint256 count = head & 0xff; // < MAX_STEWARDS: one bit per steward
        head = (head + 1) | (bit << MAP_SHIFT);
        if (count < HEAD_SCORES) {
            head |= uint256(score) << (SCORES_SHIFT + SCORE_BITS * count);
        } else {
            uint256 j = count - HEAD_SCORES;
            uint256 w = 1 + j / WORD_SCORES;
            uint256 off = SCORE_BITS * (j % WORD_SCORES);
            // (the word may hold scores of a discarded generation: overwrite)
            tally[w] = (tally[w] & ~(SCORE_MASK << off)) | (uint256(score) << off);
        }
        tally[0] = head;
        emit CreditAttested(epoch, msg.sender, op, score);

        if (count + 1 >= need) {
            uint64 median = _lowerMedian(_scores(tally));
            // forge-lint: disable-next-line(unsafe-typecast) -- median is one of the scores, each <= MAX_SCORE
            node.credit = uint32(median);
            // forge-lint: disable-next-line(unsafe-typecast) -- epoch <= block.timestamp / 1 day: fits uint32 for 11 million years
            node.creditEpoch = uint32(epoch);
            emit CreditUpdated(op, epoch, median);
        }
    }

    /// @inheritdoc ICnodeRegistry
    /// @dev Proposed or Revoked -> Approved: a revoked service may be approved again.
    function approveService(bytes32 key) external onlySteward {
        Service storage svc = _services[key];
        ServiceStatus status = svc.status;
        if (status == ServiceStatus.None) revert UnknownService(key);
        if (status == ServiceStatus.Approved) revert BadServiceStatus(key, status);
        svc.status = ServiceStatus.Approved;
        emit ServiceApproved(key, msg.sender);
    }

    /// @inheritdoc ICnodeRegistry
    /// @dev Proposed or Approved -> Revoked (revoking a proposed service rejects it).
    function revokeService(bytes32 key) external onlySteward {
        Service storage svc = _services[key];
        ServiceStatus status = svc.status;
        if (status == ServiceStatus.None) revert UnknownService(key);
        if (status == ServiceStatus.Revoked) revert BadServiceStatus(key, status);
        svc.status = ServiceStatus.Revoked;
        emit ServiceRevoked(key, msg.sender);
    }

    // ----------------------------------------------------------- proposals

    /// @inheritdoc ICnodeRegistry
    /// @dev `data` is checked against the current state now (so a bad proposal
    /// fails early) and again when executed.
    function propose(ProposalKind kind, bytes calldata data) external onlySteward returns (uint256 proposalId) {
        _apply(kind, data, false);
        proposalId = ++proposalCount;
        uint64 expiresAt = uint64(block.timestamp) + proposalTtl;
        StoredProposal storage p = _proposals[proposalId];
        p.proposer = msg.sender;
        p.kind = kind;
        p.approvals = 1;
        // forge-lint: disable-next-line(unsafe-typecast) -- expiresAt <= now + MAX_DELAY: fits uint40 until the year 36812
        p.expiresAt = uint40(expiresAt);
        p.generation = _generation;
        p.data = data;
        hasApproved[proposalId][msg.sender] = true;
        emit ProposalCreated(proposalId, kind, data, msg.sender, expiresAt);
        emit ProposalApproved(proposalId, msg.sender, 1);
    }

    /// @inheritdoc ICnodeRegistry
    function approve(uint256 proposalId) external onlySteward {
        StoredProposal storage p = _liveProposal(proposalId);
        if (hasApproved[proposalId][msg.sender]) revert AlreadyApproved(proposalId, msg.sender);
        hasApproved[proposalId][msg.sender] = true;
        uint8 approvals = p.approvals + 1;
        p.approvals = approvals;
        emit ProposalApproved(proposalId, msg.sender, approvals);
    }

    /// @inheritdoc ICnodeRegistry
    function execute(uint256 proposalId) external {
        StoredProposal storage p = _liveProposal(proposalId);
        if (p.approvals < threshold) revert NotEnoughApprovals(p.approvals, threshold);
        p.executed = true;
        _apply(p.kind, p.data, true);
        emit ProposalExecuted(proposalId);
    }

    // ---------------------------------------------------------- publishers

    /// @inheritdoc ICnodeRegistry
    function proposeService(string calldata id, string calldata version, bytes32 packageHash, bytes32 manifestHash)
        external
        returns (bytes32 key)
    {
        _checkServiceId(id);
        uint256 vlen = bytes(version).length;
        if (vlen == 0) revert Empty("version");
        if (vlen > MAX_VERSION) revert TooLong("version", vlen, MAX_VERSION);
        key = keccak256(abi.encodePacked(id, "@", version));
        Service storage svc = _services[key];
        if (svc.status != ServiceStatus.None) revert ServiceExists(key);
        svc.status = ServiceStatus.Proposed;
        svc.publisher = msg.sender;
        svc.packageHash = packageHash;
        svc.manifestHash = manifestHash;
        emit ServiceProposed(key, id, version, packageHash, manifestHash, msg.sender);
    }

    // --------------------------------------------------------------- reads

    function getNode(address operator) external view returns (NodeInfo memory info) {
        Node storage n = _nodes[operator];
        info = NodeInfo({
            status: n.status,
            stake: n.stake,
            unbondingEnds: n.unbondingEnds,
            credit: n.credit,
            creditEpoch: n.creditEpoch,
            infoHash: n.infoHash
        });
    }

    function getRoute(bytes4 region) external view returns (address[] memory) {
        return _routes[region];
    }

    function getService(bytes32 key) external view returns (Service memory) {
        return _services[key];
    }

    function serviceKey(string calldata id, string calldata version) external pure returns (bytes32) {
        return keccak256(abi.encodePacked(id, "@", version));
    }

    function stewards() external view returns (address[] memory) {
        return _stewards;
    }

    function isSteward(address who) external view returns (bool) {
        return _stewardSlot[who] != 0;
    }

    function currentEpoch() external view returns (uint64) {
        return uint64(block.timestamp / EPOCH_LENGTH);
    }

    function stewardGeneration() external view returns (uint64) {
        return _generation;
    }

    function getProposal(uint256 proposalId) external view returns (Proposal memory) {
        StoredProposal storage p = _proposals[proposalId];
        return Proposal({
            kind: p.kind,
            executed: p.executed,
            approvals: p.approvals,
            expiresAt: p.expiresAt,
            generation: p.generation,
            proposer: p.proposer,
            data: p.data
        });
    }

    function getAttestations(uint64 epoch, address operator) external view returns (uint64[] memory) {
        return _scores(_tallies[epoch][operator]);
    }

    function hasAttested(uint64 epoch, address steward, address operator) external view returns (bool) {
        uint256 slot = _stewardSlot[steward];
        if (slot == 0) return false;
        uint256 head = _tallies[epoch][operator][0];
        return (head >> GEN_SHIFT) & type(uint32).max == _generation && (head >> (MAP_SHIFT + slot - 1)) & 1 != 0;
    }

    // ------------------------------------------------------------ internal

    function _activeNode(address operator) private view returns (Node storage node) {
        node = _nodes[operator];
        NodeStatus status = node.status;
        if (status == NodeStatus.None) revert NotRegistered(operator);
        if (status != NodeStatus.Active) revert NotActive(operator);
    }

    function _liveProposal(uint256 proposalId) private view returns (StoredProposal storage p) {
        if (proposalId == 0 || proposalId > proposalCount) revert UnknownProposal(proposalId);
        p = _proposals[proposalId];
        if (p.executed) revert AlreadyExecuted(proposalId);
        if (p.generation != _generation) revert ProposalStale(proposalId);
        if (block.timestamp >= p.expiresAt) revert ProposalExpired(proposalId);
    }

    /// Checks a proposal's arguments against the current state and, when
    /// `commit`, carries it out.
    function _apply(ProposalKind kind, bytes memory data, bool commit) private {
        if (kind == ProposalKind.AddSteward) {
            address s = abi.decode(data, (address));
            if (s == address(0)) revert BadParam("steward", 0);
            if (_stewardSlot[s] != 0) revert AlreadySteward(s);
            uint256 n = _stewards.length;
            if (n == MAX_STEWARDS) revert TooMany("stewards", n + 1, MAX_STEWARDS);
            if (!commit) return;
            _stewards.push(s);
            _stewardSlot[s] = n + 1;
            ++_generation;
            emit StewardAdded(s);
        } else if (kind == ProposalKind.RemoveSteward) {
            address s = abi.decode(data, (address));
            uint256 slot = _stewardSlot[s];
            if (slot == 0) revert NotSteward(s);
            uint256 n = _stewards.length - 1;
            if (threshold > n) revert BadThreshold(threshold, n);
            if (!commit) return;
            address last = _stewards[n];
            _stewards[slot - 1] = last;
            _stewardSlot[last] = slot;
            _stewards.pop();
            delete _stewardSlot[s];
            ++_generation;
            emit StewardRemoved(s);
        } else if (kind == ProposalKind.SetThreshold) {
            uint256 t = abi.decode(data, (uint256));
            uint256 n = _stewards.length;
            if (t == 0 || t > n) revert BadThreshold(t, n);
            if (!commit) return;
            threshold = t;
            ++_generation;
            emit ThresholdChanged(t);
        } else if (kind == ProposalKind.Slash) {
            (address op, uint256 amount, string memory reason) = abi.decode(data, (address, uint256, string));
            Node storage node = _nodes[op];
            if (node.status == NodeStatus.None) revert NotRegistered(op);
            uint256 stake = node.stake;
            // Checked against the stake at execution too: the stake may have changed.
            if (amount > stake) revert SlashTooLarge(amount, stake);
            uint256 rlen = bytes(reason).length;
            if (rlen > MAX_REASON) revert TooLong("reason", rlen, MAX_REASON);
            if (!commit) return;
            // forge-lint: disable-next-line(unsafe-typecast) -- amount <= stake, which is a uint128
            node.stake = uint128(stake - amount);
            totalStake -= amount;
            slashedPool += amount;
            emit Slashed(op, amount, reason);
        } else {
            // SetParams (the enum has no other members; abi decoding rejects out-of-range kinds).
            (uint256 minStake_, uint64 unbondingDelay_, uint64 proposalTtl_) =
                abi.decode(data, (uint256, uint64, uint64));
            _checkParams(unbondingDelay_, proposalTtl_);
            if (!commit) return;
            _setParams(minStake_, unbondingDelay_, proposalTtl_);
        }
    }

    function _checkParams(uint64 unbondingDelay_, uint64 proposalTtl_) private pure {
        if (unbondingDelay_ > MAX_DELAY) revert BadParam("unbondingDelay", unbondingDelay_);
        if (proposalTtl_ == 0 || proposalTtl_ > MAX_DELAY) revert BadParam("proposalTtl", proposalTtl_);
    }

    function _setParams(uint256 minStake_, uint64 unbondingDelay_, uint64 proposalTtl_) private {
        _checkParams(unbondingDelay_, proposalTtl_);
        minStake = minStake_;
        unbondingDelay = unbondingDelay_;
        proposalTtl = proposalTtl_;
        emit ParamsChanged(minStake_, unbondingDelay_, proposalTtl_);
    }

    function _checkDetails(bytes calldata peerId, string[] calldata multiaddrs, bytes4[] calldata regions)
        private
        pure
    {
        uint256 len = peerId.length;
        if (len == 0) revert EmptyPeerId();
        if (len > MAX_PEER_ID) revert TooLong("peerId", len, MAX_PEER_ID);
        uint256 n = multiaddrs.length;
        if (n > MAX_MULTIADDRS) revert TooMany("multiaddrs", n, MAX_MULTIADDRS);
        for (uint256 i; i < n; ++i) {
            len = bytes(multiaddrs[i]).length;
            if (len > MAX_MULTIADDR_LEN) revert TooLong("multiaddr", len, MAX_MULTIADDR_LEN);
        }
        n = regions.length;
        if (n == 0) revert Empty("regions");
        if (n > MAX_REGIONS) revert TooMany("regions", n, MAX_REGIONS);
        for (uint256 i; i < n; ++i) {
            _checkRegion(regions[i]);
        }
    }

    function _checkRegion(bytes4 region) private pure {
        uint32 r = uint32(region);
        if (
            (GEOHASH_CHARS >> (r >> 24)) & (GEOHASH_CHARS >> ((r >> 16) & 0xff))
                & (GEOHASH_CHARS >> ((r >> 8) & 0xff)) & (GEOHASH_CHARS >> (r & 0xff)) & 1 == 0
        ) revert BadRegion(region);
    }

    /// Reverse-domain id: 2..=8 non-empty labels of [a-z0-9-] joined by dots, <= 128 bytes.
    function _checkServiceId(string calldata id) private pure {
        bytes calldata b = bytes(id);
        uint256 len = b.length;
        if (len > MAX_SERVICE_ID) revert TooLong("id", len, MAX_SERVICE_ID);
        uint256 labels = 1;
        uint256 labelLen;
        for (uint256 i; i < len; ++i) {
            bytes1 c = b[i];
            if (c == ".") {
                if (labelLen == 0) revert BadServiceId(id);
                ++labels;
                labelLen = 0;
            } else if ((c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "-") {
                ++labelLen;
            } else {
                revert BadServiceId(id);
            }
        }
        if (labelLen == 0 || labels < MIN_SERVICE_LABELS || labels > MAX_SERVICE_LABELS) revert BadServiceId(id);
    }

    /// The scores attested under the current generation, in arrival order.
    function _scores(uint256[3] storage tally) private view returns (uint64[] memory out) {
        uint256 head = tally[0];
        uint256 n = (head >> GEN_SHIFT) & type(uint32).max == _generation ? head & 0xff : 0;
        out = new uint64[](n);
        uint256 word = head >> SCORES_SHIFT;
        for (uint256 i; i < n; ++i) {
            uint256 k = i;
            if (i >= HEAD_SCORES) {
                uint256 j = i - HEAD_SCORES;
                k = j % WORD_SCORES;
                if (k == 0) word = tally[1 + j / WORD_SCORES];
            }
            // forge-lint: disable-next-line(unsafe-typecast) -- a 20-bit field
            out[i] = uint64((word >> (SCORE_BITS * k)) & SCORE_MASK);
        }
    }

    /// Lower median (sorted[(n-1)/2]) of a non-empty list: always one of the
    /// values. Sorts `v` in place (insertion sort; n <= MAX_STEWARDS).
    function _lowerMedian(uint64[] memory v) private pure returns (uint64) {
        uint256 n = v.length;
        for (uint256 i = 1; i < n; ++i) {
            uint64 x = v[i];
            uint256 j = i;
            while (j > 0 && v[j - 1] > x) {
                v[j] = v[j - 1];
                --j;
            }
            v[j] = x;
        }
        return v[(n - 1) / 2];
    }
}
