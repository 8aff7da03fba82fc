// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./Test.sol";
import {CnodeRegistry} from "../../src/CnodeRegistry.sol";
import {ICnodeRegistry} from "../../src/ICnodeRegistry.sol";

/// A registry with three stewards (threshold 2) and helpers shared by the suites.
abstract contract Fixture is Test {
    CnodeRegistry internal reg;
    address[] internal stewardList;
    address internal s1;
    address internal s2;
    address internal s3;

    uint256 internal constant MIN_STAKE = 1 ether;
    uint64 internal constant UNBONDING = 7 days;
    uint64 internal constant TTL = 3 days;
    /// A realistic start time (2026-01-01), well past epoch 0.
    uint256 internal constant T0 = 1_767_225_600;

    bytes4 internal constant W5Q6 = "w5q6";
    bytes4 internal constant U33D = "u33d";

    /// Node operators and an outsider.
    address internal alice;
    address internal bob;
    address internal carol;
    address internal nobody;

    function setUp() public virtual {
        vm.warp(T0);
        alice = makeAddr("alice");
        bob = makeAddr("bob");
        carol = makeAddr("carol");
        nobody = makeAddr("nobody");
        s1 = makeAddr("steward1");
        s2 = makeAddr("steward2");
        s3 = makeAddr("steward3");
        stewardList.push(s1);
        stewardList.push(s2);
        stewardList.push(s3);
        reg = new CnodeRegistry(stewardList, 2, MIN_STAKE, UNBONDING, TTL);
    }

    // ------------------------------------------------------------ node details

    /// An ed25519 libp2p peer id: identity multihash (0x00 0x24) of the protobuf key.
    function peerIdOf(address op) internal pure returns (bytes memory) {
        return abi.encodePacked(hex"002408011220", keccak256(abi.encode(op)));
    }

    function addrs2() internal pure returns (string[] memory a) {
        a = new string[](2);
        a[0] = "/ip4/203.0.113.7/udp/4001/quic-v1";
        a[1] = "/ip6/2001:db8::7/udp/4001/quic-v1";
    }

    function regions2() internal pure returns (bytes4[] memory r) {
        r = new bytes4[](2);
        r[0] = W5Q6;
        r[1] = U33D;
    }

    function one(address a) internal pure returns (address[] memory out) {
        out = new address[](1);
        out[0] = a;
    }

    function infoHash(bytes memory peerId, string[] memory multiaddrs, bytes4[] memory regions)
        internal
        pure
        returns (bytes32)
    {
        return keccak256(abi.encode(peerId, multiaddrs, regions));
    }

    /// Funds `op` and registers it with `stake`.
    function registerNode(address op, uint256 stake) internal {
        vm.deal(op, op.balance + stake);
        vm.prank(op);
        reg.register{value: stake}(peerIdOf(op), addrs2(), regions2());
    }

    function registerNode(address op) internal {
        registerNode(op, MIN_STAKE);
    }

    // --------------------------------------------------------------- proposals

    /// s1 proposes, s2 approves (threshold 2): ready to execute.
    function proposeApproved(ICnodeRegistry.ProposalKind kind, bytes memory data) internal returns (uint256 id) {
        vm.prank(s1);
        id = reg.propose(kind, data);
        vm.prank(s2);
        reg.approve(id);
    }

    /// s1 proposes, s2 approves, anyone executes (threshold 2).
    function passProposal(ICnodeRegistry.ProposalKind kind, bytes memory data) internal returns (uint256 id) {
        id = proposeApproved(kind, data);
        reg.execute(id);
    }

    /// Every current steward up to the threshold approves, then it executes.
    function passWithCurrent(ICnodeRegistry.ProposalKind kind, bytes memory data) internal returns (uint256 id) {
        address[] memory st = reg.stewards();
        uint256 t = reg.threshold();
        vm.prank(st[0]);
        id = reg.propose(kind, data);
        for (uint256 i = 1; i < t; ++i) {
            vm.prank(st[i]);
            reg.approve(id);
        }
        reg.execute(id);
    }

    /// The contract holds exactly the live stakes and the slashed pool.
    function assertAccounting() internal view {
        assertEq(address(reg).balance, reg.totalStake() + reg.slashedPool(), "balance == totalStake + slashedPool");
    }

    function err(bytes4 selector) internal pure returns (bytes memory) {
        return abi.encodeWithSelector(selector);
    }
}
