// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {ICnodeRegistry} from "../src/ICnodeRegistry.sol";

/// Random register / addStake / deregister / withdraw / slash / time sequences
/// against a model: every call that should work works, every call that should
/// fail fails with the right error, and the accounting always adds up.
contract StakeAccountingTest is Fixture {
    uint256 internal constant OPS = 4;
    uint256 internal constant STEPS = 40;

    address[OPS] internal ops;
    // the model
    ICnodeRegistry.NodeStatus[OPS] internal status;
    uint256[OPS] internal stake;
    uint256[OPS] internal ends;
    uint256 internal slashed;
    uint256 internal dealt;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < OPS; ++i) {
            ops[i] = address(uint160(0xA000 + i));
        }
    }

    function fund(address who, uint256 amount) internal {
        vm.deal(who, who.balance + amount);
        dealt += amount;
    }

    function testFuzz_stakeAccounting(uint256 seed) public {
        for (uint256 step; step < STEPS; ++step) {
            uint256 r = uint256(keccak256(abi.encode(seed, step)));
            uint256 i = (r >> 8) % OPS;
            address who = ops[i];
            uint256 amt = (r >> 16) % 5 ether;
            uint256 action = r % 6;

            if (action == 0) {
                uint256 s = MIN_STAKE + amt;
                fund(who, s);
                if (status[i] != ICnodeRegistry.NodeStatus.None) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.AlreadyRegistered.selector, who));
                } else {
                    status[i] = ICnodeRegistry.NodeStatus.Active;
                    stake[i] = s;
                }
                vm.prank(who);
                reg.register{value: s}(peerIdOf(who), addrs2(), regions2());
            } else if (action == 1) {
                uint256 s = amt + 1;
                fund(who, s);
                if (status[i] == ICnodeRegistry.NodeStatus.None) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, who));
                } else if (status[i] == ICnodeRegistry.NodeStatus.Unbonding) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, who));
                } else {
                    stake[i] += s;
                }
                vm.prank(who);
                reg.addStake{value: s}();
            } else if (action == 2) {
                if (status[i] == ICnodeRegistry.NodeStatus.None) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, who));
                } else if (status[i] == ICnodeRegistry.NodeStatus.Unbonding) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotActive.selector, who));
                } else {
                    status[i] = ICnodeRegistry.NodeStatus.Unbonding;
                    ends[i] = block.timestamp + UNBONDING;
                }
                vm.prank(who);
                reg.deregister();
            } else if (action == 3) {
                uint256 before = who.balance;
                uint256 expectPaid;
                if (status[i] == ICnodeRegistry.NodeStatus.None) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.NotRegistered.selector, who));
                } else if (status[i] == ICnodeRegistry.NodeStatus.Active) {
                    vm.expectRevert(err(ICnodeRegistry.NothingToWithdraw.selector));
                } else if (block.timestamp < ends[i]) {
                    vm.expectRevert(abi.encodeWithSelector(ICnodeRegistry.StillUnbonding.selector, uint64(ends[i])));
                } else {
                    expectPaid = stake[i];
                    status[i] = ICnodeRegistry.NodeStatus.None;
                    stake[i] = 0;
                }
                vm.prank(who);
                reg.withdraw();
                assertEq(who.balance, before + expectPaid, "paid out");
            } else if (action == 4) {
                if (status[i] != ICnodeRegistry.NodeStatus.None) {
                    uint256 cut = amt % (stake[i] + 1);
                    passProposal(ICnodeRegistry.ProposalKind.Slash, abi.encode(who, cut, "fuzz"));
                    stake[i] -= cut;
                    slashed += cut;
                }
            } else {
                vm.warp(block.timestamp + (r >> 32) % (4 days));
            }
            checkAccounting();
        }
    }

    function checkAccounting() internal view {
        uint256 sum;
        uint256 held;
        for (uint256 i; i < OPS; ++i) {
            ICnodeRegistry.NodeInfo memory n = reg.getNode(ops[i]);
            assertTrue(n.status == status[i], "status");
            assertEq(n.stake, stake[i], "stake");
            sum += n.stake;
            held += ops[i].balance;
        }
        assertEq(reg.totalStake(), sum, "totalStake == sum of stakes");
        assertEq(reg.slashedPool(), slashed, "slashedPool");
        assertEq(address(reg).balance, reg.totalStake() + reg.slashedPool(), "balance == totalStake + slashedPool");
        assertEq(held + address(reg).balance, dealt, "no wei created or lost");
    }
}
