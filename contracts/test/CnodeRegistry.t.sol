// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {CnodeRegistry} from "../src/CnodeRegistry.sol";
import {ICnodeRegistry} from "../src/ICnodeRegistry.sol";

/// Refuses ether: its withdraw must fail with TransferFailed.
contract Refuser {
    function register(CnodeRegistry reg, bytes calldata peerId, string[] calldata a, bytes4[] calldata r)
        external
        payable
    {
        reg.register{value: msg.value}(peerId, a, r);
    }

    function deregister(CnodeRegistry reg) external {
        reg.deregister();
    }

    function withdraw(CnodeRegistry reg) external {
        reg.withdraw();
    }
}

/// Re-enters withdraw (and register) when paid.
contract Reenterer {
    CnodeRegistry internal reg;
    bool public reentryOk;
    uint256 public received;

    constructor(CnodeRegistry reg_) {
        reg = reg_;
    }

    function register(bytes calldata peerId, string[] calldata a, bytes4[] calldata r) external payable {
        reg.register{value: msg.value}(peerId, a, r);
    }

    function deregister() external {
        reg.deregister();
    }

    function withdraw() external {
        reg.withdraw();
    }

    receive() external payable {
        received += msg.value;
        (bool ok,) = address(reg).call(abi.encodeCall(CnodeRegistry.withdraw, ()));
        reentryOk = reentryOk || ok;
    }
}

/// Nodes: registration, updates, stake, unbonding and withdrawal, routes and
/// credit. Services, proposals and the stewards' powers: `Stewardship.t.sol`.
contract CnodeRegistryTest is Fixture {
    // =============================================================== constructor

    function test_constructor_setsEverything() public {
        vm.roll(1234);
        vm.expectEmit(true, true, true, true);
        emit ICnodeRegistry.StewardAdded(s1);
        vm.expectEmit(true, true, true, true);
        emit ICnodeRegistry.StewardAdded(s2);
        vm.expectEmit(true, true, true, true);
        emit ICnodeRegistry.StewardAdded(s3);
        vm.expectEmit(true, true, true, true);
        emit ICnodeRegistry.ThresholdChanged(2);
        vm.expectEmit(true, true, true, true);
        emit ICnodeRegistry.ParamsChanged(MIN_STAKE, UNBONDING, TTL);
        CnodeRegistry r = new CnodeRegistry(stewardList, 2, MIN_STAKE, UNBONDING, TTL);
        assertEq(r.stewards(), stewardList);
        assertTrue(r.isSteward(s1) && r.isSteward(s2) && r.isSteward(s3));
        assertFalse(r.isSteward(alice));
        assertEq(r.threshold(), 2);
        assertEq(r.minStake(), MIN_STAKE);
        assertEq(r.unbondingDelay(), UNBONDING);
        assertEq(r.proposalTtl(), TTL);
        assertEq(r.deployBlock(), 1234);
        assertEq(r.totalStake(), 0);
        assertEq(r.slashedPool(), 0);
        assertEq(r.stewardGeneration(), 0);
        assertEq(r.proposalCount(), 0);
        assertEq(r.EPOCH_LENGTH(), 1 days);
        assertEq(r.currentEpoch(), T0 / 1 days);
    }

    function test_constructor_rejectsBadStewards() public {
        address[] memory none = new address[](0);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.Empty.selector, "stewards"));
        new CnodeRegistry(none, 1, 0, 0, 1);

        address[] memory many = new address[](33);
        for (uint256 i; i < 33; ++i) {
            many[i] = address(uint160(i + 1));
        }
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "stewards", 33, 32));
        new CnodeRegistry(many, 1, 0, 0, 1);

        address[] memory zero = new address[](2);
        zero[0] = s1;
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "steward", 0));
        new CnodeRegistry(zero, 1, 0, 0, 1);

        address[] memory dup = new address[](2);
        dup[0] = s1;
        dup[1] = s1;
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadySteward.selector, s1));
        new CnodeRegistry(dup, 1, 0, 0, 1);

        // 32 is fine
        address[] memory max = new address[](32);
        for (uint256 i; i < 32; ++i) {
            max[i] = address(uint160(i + 1));
        }
        assertEq(new CnodeRegistry(max, 32, 0, 0, 1).stewards().length, 32);
    }

    function test_constructor_rejectsBadThresholdAndParams() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 0, 3));
        new CnodeRegistry(stewardList, 0, 0, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 4, 3));
        new CnodeRegistry(stewardList, 4, 0, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "proposalTtl", 0));
        new CnodeRegistry(stewardList, 1, 0, 0, 0);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "proposalTtl", 365 days + 1));
        new CnodeRegistry(stewardList, 1, 0, 0, 365 days + 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "unbondingDelay", 365 days + 1));
        new CnodeRegistry(stewardList, 1, 0, 365 days + 1, 1);
    }

    // ================================================================== register

    function test_register_storesHashAndEmitsDetails() public {
        bytes memory pid = peerIdOf(alice);
        vm.deal(alice, 5 ether);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.NodeRegistered(alice, pid, addrs2(), regions2(), 2 ether);
        vm.prank(alice);
        reg.register{value: 2 ether}(pid, addrs2(), regions2());

        ICnodeRegistry.NodeInfo memory n = reg.getNode(alice);
        assertTrue(n.status == ICnodeRegistry.NodeStatus.Active);
        assertEq(n.stake, 2 ether);
        assertEq(n.unbondingEnds, 0);
        assertEq(n.credit, 0);
        assertEq(n.creditEpoch, 0);
        assertEq(n.infoHash, infoHash(pid, addrs2(), regions2()));
        assertEq(reg.totalStake(), 2 ether);
        assertEq(alice.balance, 3 ether);
        assertAccounting();
    }

    function test_register_acceptsTheLimits() public {
        bytes memory pid = new bytes(64);
        string[] memory a = new string[](8);
        for (uint256 i; i < 8; ++i) {
            a[i] = string(new bytes(256));
        }
        bytes4[] memory r = new bytes4[](16);
        for (uint256 i; i < 16; ++i) {
            r[i] = "0zzz";
        }
        vm.deal(alice, MIN_STAKE);
        vm.prank(alice);
        reg.register{value: MIN_STAKE}(pid, a, r);
        assertEq(reg.getNode(alice).infoHash, infoHash(pid, a, r));

        // no multiaddrs at all is fine too (a node reachable only via relays)
        vm.deal(bob, MIN_STAKE);
        vm.prank(bob);
        reg.register{value: MIN_STAKE}(hex"01", new string[](0), regions2());
    }

    function test_register_stakeTooLow() public {
        vm.deal(alice, 1 ether);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.StakeTooLow.selector, MIN_STAKE - 1, MIN_STAKE));
        vm.prank(alice);
        reg.register{value: MIN_STAKE - 1}(peerIdOf(alice), addrs2(), regions2());
    }

    function test_register_alreadyRegistered() public {
        registerNode(alice);
        vm.deal(alice, MIN_STAKE);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyRegistered.selector, alice));
        vm.prank(alice);
        reg.register{value: MIN_STAKE}(peerIdOf(alice), addrs2(), regions2());

        // still registered while unbonding
        vm.prank(alice);
        reg.deregister();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyRegistered.selector, alice));
        vm.prank(alice);
        reg.register{value: MIN_STAKE}(peerIdOf(alice), addrs2(), regions2());
    }

    function expectRegisterRevert(bytes memory pid, string[] memory a, bytes4[] memory r, bytes memory revertData)
        internal
    {
        vm.deal(alice, MIN_STAKE);
        vm.expectRevert(revertData);
        vm.prank(alice);
        reg.register{value: MIN_STAKE}(pid, a, r);
    }

    function test_register_peerIdLimits() public {
        expectRegisterRevert("", addrs2(), regions2(), err(ICnodeRegistry.EmptyPeerId.selector));
        expectRegisterRevert(
            new bytes(65),
            addrs2(),
            regions2(),
            abi.encodeWithSelector(ICnodeRegistry.TooLong.selector, "peerId", 65, 64)
        );
    }

    function test_register_multiaddrLimits() public {
        expectRegisterRevert(
            peerIdOf(alice),
            new string[](9),
            regions2(),
            abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "multiaddrs", 9, 8)
        );
        string[] memory a = addrs2();
        a[1] = string(new bytes(257));
        expectRegisterRevert(
            peerIdOf(alice), a, regions2(), abi.encodeWithSelector(ICnodeRegistry.TooLong.selector, "multiaddr", 257, 256)
        );
    }

    function test_register_regionLimits() public {
        expectRegisterRevert(
            peerIdOf(alice), addrs2(), new bytes4[](0), abi.encodeWithSelector(ICnodeRegistry.Empty.selector, "regions")
        );
        bytes4[] memory r = new bytes4[](17);
        for (uint256 i; i < 17; ++i) {
            r[i] = W5Q6;
        }
        expectRegisterRevert(
            peerIdOf(alice), addrs2(), r, abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "regions", 17, 16)
        );
    }

    function test_register_badRegions() public {
        bytes4[6] memory bad = [bytes4("w5qa"), "i5q6", "w5l6", "wo56", "W5Q6", bytes4(0)];
        for (uint256 i; i < bad.length; ++i) {
            bytes4[] memory r = regions2();
            r[1] = bad[i];
            expectRegisterRevert(
                peerIdOf(alice), addrs2(), r, abi.encodeWithSelector(ICnodeRegistry.BadRegion.selector, bad[i])
            );
        }
    }

    string internal constant GEOHASH = "0123456789bcdefghjkmnpqrstuvwxyz";

    function isGeohashChar(bytes1 c) internal pure returns (bool) {
        bytes memory g = bytes(GEOHASH);
        for (uint256 i; i < g.length; ++i) {
            if (g[i] == c) return true;
        }
        return false;
    }

    /// The bitmap check agrees with a plain alphabet lookup for any 4 bytes.
    function testFuzz_regionAlphabet(bytes4 region, uint8 pick) public {
        // half the runs: a region built from alphabet characters (mostly valid)
        if (pick % 2 == 0) {
            bytes memory g = bytes(GEOHASH);
            region = bytes4(
                abi.encodePacked(
                    g[uint8(region[0]) % 32], g[uint8(region[1]) % 32], g[uint8(region[2]) % 32], g[uint8(region[3]) % 32]
                )
            );
            if (pick % 4 == 0) region ^= bytes4(uint32(1) << (8 * (pick % 32 / 8)));
        }
        bool valid = isGeohashChar(region[0]) && isGeohashChar(region[1]) && isGeohashChar(region[2])
            && isGeohashChar(region[3]);
        bytes4[] memory r = new bytes4[](1);
        r[0] = region;
        vm.deal(alice, MIN_STAKE);
        if (!valid) vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadRegion.selector, region));
        vm.prank(alice);
        reg.register{value: MIN_STAKE}(hex"01", new string[](0), r);
        if (valid) assertTrue(reg.getNode(alice).status == ICnodeRegistry.NodeStatus.Active);
    }

    function testFuzz_register_anyStakeAboveMin(uint96 stake) public {
        uint256 s = bound(stake, MIN_STAKE, type(uint96).max);
        registerNode(alice, s);
        assertEq(reg.getNode(alice).stake, s);
        assertEq(reg.totalStake(), s);
        assertAccounting();
    }

    function test_stakeAboveUint128IsRefused() public {
        uint256 huge = uint256(type(uint128).max) + 1;
        vm.deal(alice, huge);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "stake", huge));
        vm.prank(alice);
        reg.register{value: huge}(peerIdOf(alice), addrs2(), regions2());

        registerNode(bob, type(uint128).max);
        vm.deal(bob, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "stake", huge));
        vm.prank(bob);
        reg.addStake{value: 1}();
    }

    // ==================================================================== update

    function test_update_replacesHash() public {
        registerNode(alice);
        bytes memory pid = hex"1220abcdef";
        string[] memory a = new string[](1);
        a[0] = "/dns4/node.example.org/tcp/443/wss";
        bytes4[] memory r = new bytes4[](1);
        r[0] = "gcpv";
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.NodeUpdated(alice, pid, a, r);
        vm.prank(alice);
        reg.update(pid, a, r);
        assertEq(reg.getNode(alice).infoHash, infoHash(pid, a, r));
        assertEq(reg.getNode(alice).stake, MIN_STAKE);
    }

    function test_update_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        reg.update(peerIdOf(alice), addrs2(), regions2());

        registerNode(alice);
        bytes4[] memory r = regions2();
        r[0] = "aaaa";
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadRegion.selector, bytes4("aaaa")));
        vm.prank(alice);
        reg.update(peerIdOf(alice), addrs2(), r);
        vm.expectRevert(err(ICnodeRegistry.EmptyPeerId.selector));
        vm.prank(alice);
        reg.update("", addrs2(), regions2());

        vm.prank(alice);
        reg.deregister();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, alice));
        vm.prank(alice);
        reg.update(peerIdOf(alice), addrs2(), regions2());
    }

    // ================================================================== addStake

    function test_addStake() public {
        registerNode(alice);
        vm.deal(alice, 3 ether);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.StakeAdded(alice, 3 ether, 4 ether);
        vm.prank(alice);
        reg.addStake{value: 3 ether}();
        assertEq(reg.getNode(alice).stake, 4 ether);
        assertEq(reg.totalStake(), 4 ether);
        assertAccounting();
    }

    function test_addStake_errors() public {
        vm.deal(alice, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        reg.addStake{value: 1 ether}();

        registerNode(alice);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.StakeTooLow.selector, 0, 1));
        vm.prank(alice);
        reg.addStake();

        vm.prank(alice);
        reg.deregister();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, alice));
        vm.prank(alice);
        reg.addStake{value: 1 ether}();
    }

    // ================================================================ deregister

    function test_deregister_startsUnbonding() public {
        registerNode(alice);
        vm.warp(T0 + 100);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.NodeDeregistered(alice, uint64(T0 + 100 + UNBONDING));
        vm.prank(alice);
        reg.deregister();
        ICnodeRegistry.NodeInfo memory n = reg.getNode(alice);
        assertTrue(n.status == ICnodeRegistry.NodeStatus.Unbonding);
        assertEq(n.unbondingEnds, T0 + 100 + UNBONDING);
        assertEq(n.stake, MIN_STAKE);
        assertEq(reg.totalStake(), MIN_STAKE, "unbonding stake still counts");
    }

    function test_deregister_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        reg.deregister();
        registerNode(alice);
        vm.prank(alice);
        reg.deregister();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, alice));
        vm.prank(alice);
        reg.deregister();
    }

    // ================================================================== withdraw

    function test_withdraw_paysAndForgets() public {
        registerNode(alice, 2 ether);
        vm.prank(alice);
        reg.deregister();
        vm.warp(T0 + UNBONDING - 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.StillUnbonding.selector, uint64(T0 + UNBONDING)));
        vm.prank(alice);
        reg.withdraw();

        vm.warp(T0 + UNBONDING); // exactly at unbondingEnds is allowed
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.StakeWithdrawn(alice, 2 ether);
        vm.prank(alice);
        reg.withdraw();
        assertEq(alice.balance, 2 ether);
        ICnodeRegistry.NodeInfo memory n = reg.getNode(alice);
        assertTrue(n.status == ICnodeRegistry.NodeStatus.None);
        assertEq(n.stake, 0);
        assertEq(n.infoHash, bytes32(0));
        assertEq(reg.totalStake(), 0);
        assertEq(address(reg).balance, 0);

        // and can register afresh
        registerNode(alice);
        assertTrue(reg.getNode(alice).status == ICnodeRegistry.NodeStatus.Active);
    }

    function test_withdraw_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        vm.prank(alice);
        reg.withdraw();
        registerNode(alice);
        vm.expectRevert(err(ICnodeRegistry.NothingToWithdraw.selector));
        vm.prank(alice);
        reg.withdraw();
    }

    function test_withdraw_transferFailed() public {
        Refuser r = new Refuser();
        vm.deal(address(this), MIN_STAKE);
        r.register{value: MIN_STAKE}(reg, hex"01", addrs2(), regions2());
        r.deregister(reg);
        vm.warp(T0 + UNBONDING);
        vm.expectRevert(err(ICnodeRegistry.TransferFailed.selector));
        r.withdraw(reg);
        // nothing changed: the stake is still there
        assertEq(reg.getNode(address(r)).stake, MIN_STAKE);
        assertAccounting();
    }

    function test_withdraw_reentrancyIsHarmless() public {
        registerNode(bob, 5 ether); // other stake the attacker would like to drain
        Reenterer r = new Reenterer(reg);
        vm.deal(address(this), 2 ether);
        r.register{value: 2 ether}(hex"01", addrs2(), regions2());
        r.deregister();
        vm.warp(T0 + UNBONDING);
        r.withdraw();
        assertFalse(r.reentryOk());
        assertEq(r.received(), 2 ether);
        assertEq(address(r).balance, 2 ether);
        assertEq(reg.totalStake(), 5 ether);
        assertAccounting();
    }

    function test_withdraw_afterFullSlash() public {
        registerNode(alice, 2 ether);
        passProposal(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 2 ether, "equivocation"));
        vm.prank(alice);
        reg.deregister();
        vm.warp(T0 + UNBONDING);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.StakeWithdrawn(alice, 0);
        vm.prank(alice);
        reg.withdraw();
        assertTrue(reg.getNode(alice).status == ICnodeRegistry.NodeStatus.None);
        assertEq(alice.balance, 0);
        assertEq(reg.slashedPool(), 2 ether);
        assertAccounting();
    }

    function test_noPlainEtherTransfers() public {
        vm.deal(alice, 1 ether);
        vm.prank(alice);
        (bool ok,) = address(reg).call{value: 1 ether}("");
        assertFalse(ok);
    }

    // ================================================================== setRoute

    function test_setRoute() public {
        registerNode(alice);
        registerNode(bob);
        address[] memory ops = new address[](2);
        ops[0] = bob;
        ops[1] = alice;
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.RouteSet(W5Q6, ops);
        vm.prank(s3);
        reg.setRoute(W5Q6, ops);
        assertEq(reg.getRoute(W5Q6), ops);
        assertEq(reg.getRoute(U33D).length, 0);

        // replace with a shorter list, then clear
        vm.prank(s1);
        reg.setRoute(W5Q6, one(alice));
        assertEq(reg.getRoute(W5Q6), one(alice));
        vm.prank(s1);
        reg.setRoute(W5Q6, new address[](0));
        assertEq(reg.getRoute(W5Q6).length, 0);
    }

    function test_setRoute_deregisteredNodesStayUntilReset() public {
        registerNode(alice);
        vm.prank(s1);
        reg.setRoute(W5Q6, one(alice));
        vm.prank(alice);
        reg.deregister();
        assertEq(reg.getRoute(W5Q6), one(alice));
        vm.warp(T0 + UNBONDING);
        vm.prank(alice);
        reg.withdraw();
        assertEq(reg.getRoute(W5Q6), one(alice));
    }

    function test_setRoute_acceptsThirtyTwo() public {
        address[] memory ops = new address[](32);
        for (uint256 i; i < 32; ++i) {
            ops[i] = address(uint160(0x1000 + i));
            registerNode(ops[i]);
        }
        vm.prank(s1);
        reg.setRoute(W5Q6, ops);
        assertEq(reg.getRoute(W5Q6), ops);
    }

    function test_setRoute_errors() public {
        registerNode(alice);
        registerNode(bob);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.setRoute(W5Q6, one(alice));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadRegion.selector, bytes4("w5qA")));
        vm.prank(s1);
        reg.setRoute("w5qA", one(alice));

        address[] memory many = new address[](33);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "operators", 33, 32));
        vm.prank(s1);
        reg.setRoute(W5Q6, many);

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, carol));
        vm.prank(s1);
        reg.setRoute(W5Q6, one(carol));

        address[] memory dup = new address[](3);
        dup[0] = alice;
        dup[1] = bob;
        dup[2] = alice;
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.DuplicateOperator.selector, alice));
        vm.prank(s1);
        reg.setRoute(W5Q6, dup);

        vm.prank(bob);
        reg.deregister();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, bob));
        vm.prank(s1);
        reg.setRoute(W5Q6, one(bob));
    }

    // =============================================================== attestCredit

    function attest(address steward, uint64 epoch, address op, uint64 score) internal {
        address[] memory ops = one(op);
        uint64[] memory scores = new uint64[](1);
        scores[0] = score;
        vm.prank(steward);
        reg.attestCredit(epoch, ops, scores);
    }

    function test_attestCredit_medianAtThreshold() public {
        registerNode(alice);
        uint64 e = reg.currentEpoch();

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.CreditAttested(e, s1, alice, 900_000);
        attest(s1, e, alice, 900_000);
        assertEq(reg.getNode(alice).credit, 0, "one attestation is below the threshold");
        assertTrue(reg.hasAttested(e, s1, alice));
        assertFalse(reg.hasAttested(e, s2, alice));

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.CreditAttested(e, s2, alice, 500_000);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.CreditUpdated(alice, e, 500_000); // lower median of {500k, 900k}
        attest(s2, e, alice, 500_000);
        assertEq(reg.getNode(alice).credit, 500_000);
        assertEq(reg.getNode(alice).creditEpoch, e);

        // a later attestation for the same epoch recomputes over all three
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.CreditUpdated(alice, e, 700_000);
        attest(s3, e, alice, 700_000);
        assertEq(reg.getNode(alice).credit, 700_000);
        uint64[] memory got = reg.getAttestations(e, alice);
        assertEq(got.length, 3);
        assertEq(got[0], 900_000);
        assertEq(got[1], 500_000);
        assertEq(got[2], 700_000);
    }

    function test_attestCredit_batch() public {
        registerNode(alice);
        registerNode(bob);
        uint64 e = reg.currentEpoch();
        address[] memory ops = new address[](2);
        ops[0] = alice;
        ops[1] = bob;
        uint64[] memory scores = new uint64[](2);
        scores[0] = 1_000_000;
        scores[1] = 0;
        vm.prank(s1);
        reg.attestCredit(e, ops, scores);
        scores[0] = 800_000;
        scores[1] = 10;
        vm.prank(s2);
        reg.attestCredit(e, ops, scores);
        assertEq(reg.getNode(alice).credit, 800_000);
        assertEq(reg.getNode(bob).credit, 0);
        assertEq(reg.getNode(bob).creditEpoch, e);
    }

    function test_attestCredit_epochRule() public {
        registerNode(alice);
        uint64 e = reg.currentEpoch();
        // the previous epoch is still open, the one before is not, the next is not yet
        attest(s1, e - 1, alice, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadEpoch.selector, e - 2));
        attest(s1, e - 2, alice, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadEpoch.selector, e + 1));
        attest(s1, e + 1, alice, 1);

        // once epoch e is accepted, e - 1 is closed for this node
        attest(s1, e, alice, 10);
        attest(s2, e, alice, 20);
        assertEq(reg.getNode(alice).creditEpoch, e);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadEpoch.selector, e - 1));
        attest(s2, e - 1, alice, 1);

        // next day: e + 1 opens and replaces the credit when accepted
        vm.warp(block.timestamp + 1 days);
        attest(s1, e + 1, alice, 30);
        attest(s3, e + 1, alice, 40);
        assertEq(reg.getNode(alice).credit, 30);
        assertEq(reg.getNode(alice).creditEpoch, e + 1);
    }

    function test_attestCredit_errors() public {
        registerNode(alice);
        uint64 e = reg.currentEpoch();
        address[] memory ops = one(alice);
        uint64[] memory scores = new uint64[](1);

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.attestCredit(e, ops, scores);

        vm.expectRevert(err(ICnodeRegistry.LengthMismatch.selector));
        vm.prank(s1);
        reg.attestCredit(e, ops, new uint64[](2));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.Empty.selector, "operators"));
        vm.prank(s1);
        reg.attestCredit(e, new address[](0), new uint64[](0));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "operators", 257, 256));
        vm.prank(s1);
        reg.attestCredit(e, new address[](257), new uint64[](257));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadScore.selector, 1_000_001));
        attest(s1, e, alice, 1_000_001);

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, bob));
        attest(s1, e, bob, 1);

        attest(s1, e, alice, 1_000_000);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyAttested.selector, e, s1, alice));
        attest(s1, e, alice, 1);

        // a failing entry reverts the whole batch
        registerNode(bob);
        address[] memory two = new address[](2);
        two[0] = bob;
        two[1] = alice;
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyAttested.selector, e, s1, alice));
        vm.prank(s1);
        reg.attestCredit(e, two, new uint64[](2));
        assertFalse(reg.hasAttested(e, s1, bob));
    }

    function test_attestCredit_unbondingNodesStillScored() public {
        registerNode(alice);
        vm.prank(alice);
        reg.deregister();
        uint64 e = reg.currentEpoch();
        attest(s1, e, alice, 5);
        attest(s2, e, alice, 5);
        assertEq(reg.getNode(alice).credit, 5);
    }

    /// 32 stewards fill all three tally words; a steward-set change discards
    /// the attestations in flight (the accepted credit stays).
    function test_attestCredit_thirtyTwoThenStewardChange() public {
        address[] memory st = new address[](32);
        for (uint256 i; i < 32; ++i) {
            st[i] = address(uint160(0x5000 + i));
        }
        reg = new CnodeRegistry(st, 1, MIN_STAKE, UNBONDING, TTL);
        registerNode(alice);
        uint64 e = reg.currentEpoch();
        for (uint256 i; i < 32; ++i) {
            attest(st[i], e, alice, uint64(1_000_000 - i * 31_111));
        }
        uint64[] memory got = reg.getAttestations(e, alice);
        assertEq(got.length, 32);
        for (uint256 i; i < 32; ++i) {
            assertEq(got[i], 1_000_000 - i * 31_111);
            assertTrue(reg.hasAttested(e, st[i], alice));
        }
        assertEq(reg.getNode(alice).credit, 1_000_000 - 16 * 31_111); // lower median
        for (uint256 i; i < 32; ++i) {
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyAttested.selector, e, st[i], alice));
            attest(st[i], e, alice, 1);
        }

        vm.prank(st[0]);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(st[31]));
        reg.execute(id);
        assertEq(reg.getAttestations(e, alice).length, 0, "discarded with the old generation");
        assertFalse(reg.hasAttested(e, st[0], alice));
        assertEq(reg.getNode(alice).credit, 1_000_000 - 16 * 31_111, "accepted credit stays");

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.CreditUpdated(alice, e, 42);
        attest(st[5], e, alice, 42); // threshold 1: accepted at once
        assertEq(reg.getAttestations(e, alice).length, 1);
        assertTrue(reg.hasAttested(e, st[5], alice));
        assertFalse(reg.hasAttested(e, st[31], alice));
    }

    /// The accepted credit is the lower median of what the stewards attested,
    /// recomputed with every attestation once the threshold is reached.
    function testFuzz_attestCredit_median(uint8 nRaw, uint8 tRaw, uint256 seed) public {
        uint256 n = bound(nRaw, 1, 32);
        uint256 t = bound(tRaw, 1, n);
        address[] memory st = new address[](n);
        for (uint256 i; i < n; ++i) {
            st[i] = address(uint160(0x5000 + i));
        }
        reg = new CnodeRegistry(st, t, MIN_STAKE, UNBONDING, TTL);
        registerNode(alice);
        uint64 e = reg.currentEpoch();
        uint64[] memory scores = new uint64[](n);
        for (uint256 i; i < n; ++i) {
            // few distinct values half the time, to exercise ties
            uint256 r = uint256(keccak256(abi.encode(seed, i)));
            scores[i] = uint64(seed % 2 == 0 ? r % 1_000_001 : (r % 4) * 250_000);
            attest(st[i], e, alice, scores[i]);
            if (i + 1 < t) {
                assertEq(reg.getNode(alice).creditEpoch, 0, "not before the threshold");
            } else {
                assertEq(reg.getNode(alice).credit, refLowerMedian(scores, i + 1), "median");
                assertEq(reg.getNode(alice).creditEpoch, e);
            }
        }
        uint64[] memory got = reg.getAttestations(e, alice);
        assertEq(got.length, n);
        for (uint256 i; i < n; ++i) {
            assertEq(got[i], scores[i]);
        }
    }

    /// Reference: selection by counting, unlike the contract's insertion sort.
    function refLowerMedian(uint64[] memory v, uint256 n) internal pure returns (uint256) {
        uint256 want = (n - 1) / 2;
        for (uint256 i; i < n; ++i) {
            uint256 below;
            uint256 equal;
            for (uint256 j; j < n; ++j) {
                if (v[j] < v[i]) ++below;
                else if (v[j] == v[i]) ++equal;
            }
            if (below <= want && want < below + equal) return v[i];
        }
        revert("unreachable");
    }
}
