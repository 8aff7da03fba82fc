// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Test} from "./utils/Test.sol";
import {CnodeRegistry} from "../src/CnodeRegistry.sol";
import {ICnodeRegistry} from "../src/ICnodeRegistry.sol";

/// m-of-n proposals under random steward counts, thresholds, approval orders,
/// expiry times and steward-set changes.
contract GovernanceFuzzTest is Test {
    CnodeRegistry internal reg;
    address[] internal st;

    uint256 internal constant T0 = 1_767_225_600;

    function deploy(uint256 n, uint256 t, uint64 ttl) internal {
        vm.warp(T0);
        delete st;
        for (uint256 i; i < n; ++i) {
            st.push(address(uint160(0x1000 + i)));
        }
        reg = new CnodeRegistry(st, t, 0, 0, ttl);
    }

    /// A random permutation of 0..n-1.
    function shuffled(uint256 n, uint256 seed) internal pure returns (uint256[] memory p) {
        p = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            p[i] = i;
        }
        for (uint256 i = n; i > 1; --i) {
            uint256 j = uint256(keccak256(abi.encode(seed, i))) % i;
            (p[i - 1], p[j]) = (p[j], p[i - 1]);
        }
    }

    function neutral(uint256 minStake) internal pure returns (bytes memory) {
        return abi.encode(minStake, uint64(1), uint64(2 days));
    }

    /// Execution succeeds exactly when approvals (proposer included) reach the threshold,
    /// whatever the order of approvers.
    function testFuzz_mOfN(uint8 nRaw, uint8 tRaw, uint8 kRaw, uint256 seed) public {
        uint256 n = bound(nRaw, 1, 32);
        uint256 t = bound(tRaw, 1, n);
        uint256 k = bound(kRaw, 1, n);
        deploy(n, t, 2 days);
        uint256[] memory order = shuffled(n, seed);

        vm.prank(st[order[0]]);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetParams, neutral(7));
        for (uint256 i = 1; i < k; ++i) {
            if (i < t) {
                vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotEnoughApprovals.selector, i, t));
                reg.execute(id);
            }
            vm.prank(st[order[i]]);
            reg.approve(id);
            assertEq(reg.getProposal(id).approvals, i + 1, "approvals");
            assertTrue(reg.hasApproved(id, st[order[i]]));
        }
        // an approver approving twice never counts twice
        uint256 again = order[seed % k];
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyApproved.selector, id, st[again]));
        vm.prank(st[again]);
        reg.approve(id);

        if (k >= t) {
            reg.execute(id);
            assertEq(reg.minStake(), 7);
            assertTrue(reg.getProposal(id).executed);
        } else {
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotEnoughApprovals.selector, k, t));
            reg.execute(id);
            assertEq(reg.minStake(), 0);
        }
    }

    /// A proposal can be approved and executed strictly before expiresAt, never at or after.
    function testFuzz_expiry(uint64 ttlRaw, uint64 dtRaw) public {
        uint64 ttl = uint64(bound(ttlRaw, 1, 365 days));
        uint256 dt = bound(dtRaw, 0, 2 * uint256(ttl));
        deploy(3, 2, ttl);
        vm.prank(st[0]);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.SetParams, neutral(9));
        assertEq(reg.getProposal(id).expiresAt, T0 + ttl);
        vm.warp(T0 + dt);
        if (dt < ttl) {
            vm.prank(st[1]);
            reg.approve(id);
            reg.execute(id);
            assertEq(reg.minStake(), 9);
        } else {
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalExpired.selector, id));
            vm.prank(st[1]);
            reg.approve(id);
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalExpired.selector, id));
            reg.execute(id);
        }
    }

    /// Approve `id` by every steward that has not yet.
    function approveAll(uint256 id) internal {
        for (uint256 i; i < st.length; ++i) {
            if (!reg.hasApproved(id, st[i])) {
                vm.prank(st[i]);
                reg.approve(id);
            }
        }
    }

    /// Any executed change of the steward set or threshold makes every older
    /// proposal stale, however many approvals it had; Slash and SetParams do not.
    function testFuzz_staleAfterStewardChange(uint8 nRaw, uint8 tRaw, uint8 change, uint256 seed) public {
        uint256 n = bound(nRaw, 2, 31); // room to add one steward
        uint256 t = bound(tRaw, 1, n - 1); // and to remove one
        deploy(n, t, 2 days);
        uint256[] memory order = shuffled(n, seed);

        vm.prank(st[order[0]]);
        uint256 p = reg.propose(ICnodeRegistry.ProposalKind.SetParams, neutral(5));
        approveAll(p); // fully approved: executable right now

        uint256 kind = change % 5;
        bytes memory data;
        if (kind == 0) data = abi.encode(address(0xBEEF));
        else if (kind == 1) data = abi.encode(st[order[1]]);
        else if (kind == 2) data = abi.encode(bound(seed, 1, n));
        else if (kind == 3) data = abi.encode(address(0)); // placeholder, Slash needs a node
        else data = neutral(6);
        if (kind == 3) {
            address op = address(0xCAFE);
            vm.deal(op, 1 ether);
            vm.prank(op);
            bytes4[] memory r = new bytes4[](1);
            r[0] = "u33d";
            reg.register{value: 1 ether}(hex"01", new string[](0), r);
            data = abi.encode(op, uint256(1), "x");
        }
        vm.prank(st[order[1]]);
        uint256 q = reg.propose(ICnodeRegistry.ProposalKind(kind), data);
        approveAll(q);
        uint64 genBefore = reg.stewardGeneration();
        reg.execute(q);

        if (kind <= 2) {
            assertEq(reg.stewardGeneration(), genBefore + 1, "generation bumped");
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalStale.selector, p));
            reg.execute(p);
            address[] memory now_ = reg.stewards();
            vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalStale.selector, p));
            vm.prank(now_[0]);
            reg.approve(p);
            // a fresh proposal under the new set works
            vm.prank(now_[0]);
            uint256 fresh = reg.propose(ICnodeRegistry.ProposalKind.SetParams, neutral(5));
            assertEq(reg.getProposal(fresh).generation, genBefore + 1);
            delete st;
            for (uint256 i; i < now_.length; ++i) {
                st.push(now_[i]);
            }
            approveAll(fresh);
            reg.execute(fresh);
        } else {
            assertEq(reg.stewardGeneration(), genBefore, "generation unchanged");
            reg.execute(p);
        }
        assertEq(reg.minStake(), 5);
    }

    /// A removed steward's approval of a pending proposal never counts, even
    /// when its removal is reverted by adding it back.
    function testFuzz_removedStewardApprovalNeverCounts(uint256 seed) public {
        deploy(4, 3, 2 days);
        uint256[] memory order = shuffled(4, seed);
        address x = st[order[0]];
        vm.prank(x);
        uint256 p = reg.propose(ICnodeRegistry.ProposalKind.SetParams, neutral(5));

        vm.prank(st[order[1]]);
        uint256 rm = reg.propose(ICnodeRegistry.ProposalKind.RemoveSteward, abi.encode(x));
        vm.prank(st[order[2]]);
        reg.approve(rm);
        vm.prank(st[order[3]]);
        reg.approve(rm);
        reg.execute(rm);
        assertFalse(reg.isSteward(x));
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotSteward.selector, x));
        vm.prank(x);
        reg.approve(p);

        vm.prank(st[order[1]]);
        uint256 add = reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(x));
        vm.prank(st[order[2]]);
        reg.approve(add);
        vm.prank(st[order[3]]);
        reg.approve(add);
        reg.execute(add);
        assertTrue(reg.isSteward(x));
        // x is back, but p (approved by x before) belongs to an old generation
        vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.ProposalStale.selector, p));
        vm.prank(st[order[1]]);
        reg.approve(p);
    }
}
