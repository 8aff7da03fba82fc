// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {CnodeRegistry} from "../src/CnodeRegistry.sol";
import {ICnodeRegistry} from "../src/ICnodeRegistry.sol";

/// Services (the API list), m-of-n proposals and what they execute: steward
/// changes, threshold, slashing and parameters. Nodes: `CnodeRegistry.t.sol`.
contract StewardshipTest is Fixture {
    // ================================================================== services

    bytes32 internal constant PKG = keccak256("package");
    bytes32 internal constant MANIFEST = keccak256("manifest");

    function test_proposeService() public {
        bytes32 key = reg.serviceKey("org.cnode.events", "1.2.0");
        assertEq(key, keccak256("org.cnode.events@1.2.0"));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ServiceProposed(key, "org.cnode.events", "1.2.0", PKG, MANIFEST, nobody);
        vm.prank(nobody); // anyone may propose
        bytes32 got = reg.proposeService("org.cnode.events", "1.2.0", PKG, MANIFEST);
        assertEq(got, key);
        ICnodeRegistry.Service memory s = reg.getService(key);
        assertTrue(s.status == ICnodeRegistry.ServiceStatus.Proposed);
        assertEq(s.publisher, nobody);
        assertEq(s.packageHash, PKG);
        assertEq(s.manifestHash, MANIFEST);

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ServiceExists.selector, key));
        vm.prank(alice);
        reg.proposeService("org.cnode.events", "1.2.0", bytes32(0), bytes32(0));

        // another version is another service
        reg.proposeService("org.cnode.events", "1.2.1", PKG, MANIFEST);
        // limits: 8 labels, 128 bytes, 32-byte version
        reg.proposeService("a.b.c.d.e.f.g.h", "v", PKG, MANIFEST);
        reg.proposeService(
            "org.example.x123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789012345678901",
            "12345678901234567890123456789012",
            PKG,
            MANIFEST
        );
    }

    function test_proposeService_badIds() public {
        string[10] memory bad = [
            "events",
            "Org.cnode.events",
            "org..events",
            ".org.cnode",
            "org.cnode.",
            "org.cnode_events",
            "org.cnode@events",
            "a.b.c.d.e.f.g.h.i",
            "",
            "org.cnode events"
        ];
        for (uint256 i; i < bad.length; ++i) {
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadServiceId.selector, bad[i]));
            reg.proposeService(bad[i], "1", PKG, MANIFEST);
        }
        string memory long = string.concat("org.", string(new bytes(125)));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooLong.selector, "id", 129, 128));
        reg.proposeService(long, "1", PKG, MANIFEST);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.Empty.selector, "version"));
        reg.proposeService("org.cnode", "", PKG, MANIFEST);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooLong.selector, "version", 33, 32));
        reg.proposeService("org.cnode", string(new bytes(33)), PKG, MANIFEST);
    }

    function isIdChar(bytes1 c) internal pure returns (bool) {
        return (c >= "a" && c <= "z") || (c >= "0" && c <= "9") || c == "-";
    }

    /// Reference rule, written differently from the contract: split on dots.
    function refValidId(bytes memory b) internal pure returns (bool) {
        if (b.length > 128) return false;
        uint256 labels;
        uint256 start;
        for (uint256 i; i <= b.length; ++i) {
            if (i == b.length || b[i] == ".") {
                if (i == start) return false;
                ++labels;
                start = i + 1;
            } else if (!isIdChar(b[i])) {
                return false;
            }
        }
        return labels >= 2 && labels <= 8;
    }

    function testFuzz_serviceIdRule(bytes memory raw) public {
        // bias towards the interesting alphabet: map most bytes onto "ab-9."
        bytes memory id = new bytes(raw.length % 40);
        for (uint256 i; i < id.length; ++i) {
            uint8 x = uint8(raw[i]);
            id[i] = x < 200 ? bytes("ab-9.")[x % 5] : raw[i];
        }
        if (refValidId(id)) {
            reg.proposeService(string(id), "1", PKG, MANIFEST);
        } else {
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadServiceId.selector, string(id)));
            reg.proposeService(string(id), "1", PKG, MANIFEST);
        }
    }

    function test_approveAndRevokeService() public {
        bytes32 key = reg.proposeService("org.cnode.maps", "0.1", PKG, MANIFEST);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ServiceApproved(key, s2);
        vm.prank(s2);
        reg.approveService(key);
        assertTrue(reg.getService(key).status == ICnodeRegistry.ServiceStatus.Approved);

        vm.expectRevert(
            abi.encodeWithSelector(ICnodeRegistry.BadServiceStatus.selector, key, ICnodeRegistry.ServiceStatus.Approved)
        );
        vm.prank(s1);
        reg.approveService(key);

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ServiceRevoked(key, s3);
        vm.prank(s3);
        reg.revokeService(key);
        assertTrue(reg.getService(key).status == ICnodeRegistry.ServiceStatus.Revoked);

        vm.expectRevert(
            abi.encodeWithSelector(ICnodeRegistry.BadServiceStatus.selector, key, ICnodeRegistry.ServiceStatus.Revoked)
        );
        vm.prank(s1);
        reg.revokeService(key);

        // a revoked service can be approved again
        vm.prank(s1);
        reg.approveService(key);
        assertTrue(reg.getService(key).status == ICnodeRegistry.ServiceStatus.Approved);

        // a proposed one can be revoked (rejected) directly
        bytes32 k2 = reg.proposeService("org.cnode.maps", "0.2", PKG, MANIFEST);
        vm.prank(s1);
        reg.revokeService(k2);
        assertTrue(reg.getService(k2).status == ICnodeRegistry.ServiceStatus.Revoked);
        // and the key stays taken
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ServiceExists.selector, k2));
        reg.proposeService("org.cnode.maps", "0.2", PKG, MANIFEST);
    }

    function test_serviceStewardErrors() public {
        bytes32 key = reg.proposeService("org.cnode.maps", "0.1", PKG, MANIFEST);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.approveService(key);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.revokeService(key);
        bytes32 unknown = keccak256("nope");
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.UnknownService.selector, unknown));
        vm.prank(s1);
        reg.approveService(unknown);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.UnknownService.selector, unknown));
        vm.prank(s1);
        reg.revokeService(unknown);
    }

    // ================================================================= proposals

    function test_propose_approve_execute_events() public {
        bytes memory data = abi.encode(carol);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ProposalCreated(1, ICnodeRegistry.ProposalKind.AddSteward, data, s1, uint64(T0 + TTL));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ProposalApproved(1, s1, 1);
        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.AddSteward, data);
        assertEq(id, 1);
        assertEq(reg.proposalCount(), 1);
        assertTrue(reg.hasApproved(1, s1));

        ICnodeRegistry.Proposal memory p = reg.getProposal(1);
        assertTrue(p.kind == ICnodeRegistry.ProposalKind.AddSteward);
        assertFalse(p.executed);
        assertEq(p.approvals, 1);
        assertEq(p.expiresAt, T0 + TTL);
        assertEq(p.generation, 0);
        assertEq(p.proposer, s1);
        assertEq(keccak256(p.data), keccak256(data));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotEnoughApprovals.selector, 1, 2));
        reg.execute(1);

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ProposalApproved(1, s3, 2);
        vm.prank(s3);
        reg.approve(1);

        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.StewardAdded(carol);
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ProposalExecuted(1);
        vm.prank(nobody); // anyone executes
        reg.execute(1);
        assertTrue(reg.getProposal(1).executed);
        assertTrue(reg.isSteward(carol));
        assertEq(reg.stewards().length, 4);
        assertEq(reg.stewardGeneration(), 1);
    }

    function test_proposal_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(1));

        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(1));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(alice);
        reg.approve(id);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyApproved.selector, id, s1));
        vm.prank(s1);
        reg.approve(id);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.UnknownProposal.selector, 0));
        vm.prank(s2);
        reg.approve(0);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.UnknownProposal.selector, 2));
        vm.prank(s2);
        reg.approve(2);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.UnknownProposal.selector, 2));
        reg.execute(2);

        vm.prank(s2);
        reg.approve(id);
        reg.execute(id);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyExecuted.selector, id));
        reg.execute(id);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyExecuted.selector, id));
        vm.prank(s3);
        reg.approve(id);
    }

    function test_proposal_expires() public {
        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(3));
        vm.warp(T0 + TTL - 1);
        vm.prank(s2);
        reg.approve(id);
        vm.warp(T0 + TTL);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalExpired.selector, id));
        reg.execute(id);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalExpired.selector, id));
        vm.prank(s3);
        reg.approve(id);
        assertEq(reg.threshold(), 2);
    }

    function test_proposal_staleAfterStewardChange() public {
        vm.prank(s1);
        uint256 old = reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(3));
        vm.prank(s3);
        reg.approve(old);
        passProposal(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(carol));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalStale.selector, old));
        reg.execute(old);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalStale.selector, old));
        vm.prank(s2);
        reg.approve(old);
    }

    function test_proposal_badDataReverts() public {
        vm.expectRevert();
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.Slash, hex"01");
        // out-of-range kind
        (bool ok,) = address(reg).call(abi.encodeWithSelector(reg.propose.selector, uint256(5), abi.encode(1)));
        assertFalse(ok);
    }

    // -------------------------------------------------------------- AddSteward

    function test_addSteward_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "steward", 0));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(address(0)));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadySteward.selector, s2));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(s2));

        // checked again at execution: two proposals adding the same steward
        vm.prank(s1);
        uint256 a = reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(carol));
        vm.prank(s2);
        reg.approve(a);
        reg.execute(a);
        assertTrue(reg.isSteward(carol));
    }

    function test_addSteward_full() public {
        address[] memory st = new address[](32);
        for (uint256 i; i < 32; ++i) {
            st[i] = address(uint160(0x5000 + i));
        }
        reg = new CnodeRegistry(st, 1, MIN_STAKE, UNBONDING, TTL);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooMany.selector, "stewards", 33, 32));
        vm.prank(st[0]);
        reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(carol));
    }

    // ----------------------------------------------------------- RemoveSteward

    function test_removeSteward() public {
        uint256 pid = proposeApproved(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(s1));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.StewardRemoved(s1);
        reg.execute(pid);
        assertFalse(reg.isSteward(s1));
        address[] memory st = reg.stewards();
        assertEq(st.length, 2);
        assertEq(st[0], s3); // swap-and-pop
        assertEq(st[1], s2);
        assertTrue(reg.isSteward(s2) && reg.isSteward(s3));

        // a removed steward can no longer act
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, s1));
        vm.prank(s1);
        reg.setRoute(W5Q6, new address[](0));

        // the others still can (remove s3, the first entry now)
        vm.prank(s2);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(1));
        vm.prank(s3);
        reg.approve(id);
        reg.execute(id);
        vm.prank(s2);
        id = reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(s3));
        reg.execute(id);
        assertEq(reg.stewards(), one(s2));
    }

    function test_removeSteward_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, alice));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(alice));

        // 3 stewards, threshold 3: removing one would leave 2 < 3
        passProposal(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(3));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 3, 2));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(s2));

        // the last steward can never be removed (threshold >= 1)
        address[] memory solo = one(s1);
        reg = new CnodeRegistry(solo, 1, 0, 0, 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 1, 0));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(s1));
    }

    // ------------------------------------------------------------ SetThreshold

    function test_setThreshold() public {
        uint256 pid = proposeApproved(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(3));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ThresholdChanged(3);
        reg.execute(pid);
        assertEq(reg.threshold(), 3);
        assertEq(reg.stewardGeneration(), 1);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 0, 3));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(0));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadThreshold.selector, 4, 3));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(4));
    }

    // ------------------------------------------------------------------- Slash

    function test_slash() public {
        registerNode(alice, 3 ether);
        registerNode(bob, 2 ether);
        uint256 pid = proposeApproved(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 1 ether, "served forged records"));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.Slashed(alice, 1 ether, "served forged records");
        reg.execute(pid);
        assertEq(reg.getNode(alice).stake, 2 ether);
        assertEq(reg.totalStake(), 4 ether);
        assertEq(reg.slashedPool(), 1 ether);
        assertEq(reg.stewardGeneration(), 0, "slashing does not make other proposals stale");
        assertTrue(reg.getNode(alice).status == ICnodeRegistry.NodeStatus.Active);
        assertAccounting();
    }

    function test_slash_whileUnbonding() public {
        registerNode(alice, 3 ether);
        vm.prank(alice);
        reg.deregister();
        passProposal(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 3 ether, ""));
        assertEq(reg.getNode(alice).stake, 0);
        assertAccounting();
    }

    function test_slash_errors() public {
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 1, "x"));

        registerNode(alice, 2 ether);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.SlashTooLarge.selector, 2 ether + 1, 2 ether));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 2 ether + 1, "x"));

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.TooLong.selector, "reason", 257, 256));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 1, string(new bytes(257))));

        // checked again at execution: two slashes that each fit alone
        vm.prank(s1);
        uint256 a = reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 1.5 ether, "a"));
        vm.prank(s1);
        uint256 b = reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 1.5 ether, "b"));
        vm.prank(s2);
        reg.approve(a);
        vm.prank(s2);
        reg.approve(b);
        reg.execute(a);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.SlashTooLarge.selector, 1.5 ether, 0.5 ether));
        reg.execute(b);

        // and the operator leaving before execution
        passProposal(ICnodeRegistry.ProposalKind.SetParams, abi.encode(MIN_STAKE, uint64(1 hours), TTL));
        uint256 c = proposeApproved(ICnodeRegistry.ProposalKind.Slash, abi.encode(alice, 0.5 ether, "c"));
        vm.prank(alice);
        reg.deregister();
        vm.warp(block.timestamp + 1 hours);
        vm.prank(alice);
        reg.withdraw();
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, alice));
        reg.execute(c);
        assertAccounting();
    }

    // --------------------------------------------------------------- SetParams

    function test_setParams() public {
        uint256 pid = proposeApproved(ICnodeRegistry.ProposalKind.SetParams, abi.encode(uint256(5 ether), uint64(1 days), uint64(1 hours)));
        vm.expectEmit(true, true, true, true, address(reg));
        emit ICnodeRegistry.ParamsChanged(5 ether, 1 days, 1 hours);
        reg.execute(pid);
        assertEq(reg.minStake(), 5 ether);
        assertEq(reg.unbondingDelay(), 1 days);
        assertEq(reg.proposalTtl(), 1 hours);
        assertEq(reg.stewardGeneration(), 0);

        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "proposalTtl", 0));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.SetParams, abi.encode(uint256(1), uint64(1), uint64(0)));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.BadParam.selector, "unbondingDelay", 366 days));
        vm.prank(s1);
        reg.propose(ICnodeRegistry.ProposalKind.SetParams, abi.encode(uint256(1), uint64(366 days), uint64(1)));

        // new limits apply to new actions only
        vm.deal(alice, 5 ether);
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.StakeTooLow.selector, 4 ether, 5 ether));
        vm.prank(alice);
        reg.register{value: 4 ether}(peerIdOf(alice), addrs2(), regions2());
        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetThreshold, abi.encode(1));
        assertEq(reg.getProposal(id).expiresAt, block.timestamp + 1 hours);
    }
}
