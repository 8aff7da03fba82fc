// SPDX-License-Identifier: MIT OR Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./utils/Fixture.sol";
import {ICnodeRegistry} from "../src/ICnodeRegistry.sol";

/// Typical calls, one scenario per test, for the README's gas table:
///   forge test --match-contract GasTest --gas-report --isolate
/// (--isolate runs each call as its own transaction, so the figures include
/// the 21000 base cost and calldata, as on a real chain).
contract GasTest is Fixture {
    address internal constant ALICE = address(0xA11CE);
    address internal constant BOB = address(0xB0B);

    /// The target from the design: register with 2 multiaddrs and 2 regions
    /// costs at most 150k gas as a whole transaction. Measured here from
    /// inside a test, which over-counts (the test's CALL pays for the value
    /// transfer and the cold account), plus the base cost and calldata.
    function test_gas_registerWithinBudget() public {
        bytes memory pid = peerIdOf(ALICE);
        string[] memory a = addrs2();
        bytes4[] memory r = regions2();
        bytes memory callData = abi.encodeCall(reg.register, (pid, a, r));
        uint256 calldataGas;
        for (uint256 i; i < callData.length; ++i) {
            calldataGas += callData[i] == 0 ? 4 : 16;
        }
        vm.deal(ALICE, MIN_STAKE);
        vm.prank(ALICE);
        uint256 before = gasleft();
        reg.register{value: MIN_STAKE}(pid, a, r);
        uint256 used = before - gasleft();
        assertLe(21_000 + calldataGas + used, 150_000, "register gas");
    }

    function test_gas_register() public {
        registerNode(ALICE);
    }

    function test_gas_update() public {
        registerNode(ALICE);
        string[] memory a = addrs2();
        a[0] = "/ip4/198.51.100.9/udp/4001/quic-v1";
        vm.prank(ALICE);
        reg.update(peerIdOf(ALICE), a, regions2());
    }

    function test_gas_addStake_deregister_withdraw() public {
        registerNode(ALICE);
        vm.deal(ALICE, 1 ether);
        vm.prank(ALICE);
        reg.addStake{value: 1 ether}();
        vm.prank(ALICE);
        reg.deregister();
        vm.warp(block.timestamp + UNBONDING);
        vm.prank(ALICE);
        reg.withdraw();
    }

    function test_gas_setRoute3() public {
        address[] memory ops = new address[](3);
        for (uint256 i; i < 3; ++i) {
            ops[i] = address(uint160(0xC000 + i));
            registerNode(ops[i]);
        }
        vm.prank(s1);
        reg.setRoute(W5Q6, ops);
    }

    function test_gas_attestCredit() public {
        registerNode(ALICE);
        uint64 e = reg.currentEpoch();
        address[] memory ops = one(ALICE);
        uint64[] memory scores = new uint64[](1);
        scores[0] = 750_000;
        vm.prank(s1);
        reg.attestCredit(e, ops, scores); // below the threshold
        vm.prank(s2);
        reg.attestCredit(e, ops, scores); // reaches it: median, CreditUpdated
    }

    function test_gas_attestCredit10() public {
        address[] memory ops = new address[](10);
        uint64[] memory scores = new uint64[](10);
        for (uint256 i; i < 10; ++i) {
            ops[i] = address(uint160(0xD000 + i));
            scores[i] = uint64(100_000 * i);
            registerNode(ops[i]);
        }
        uint64 e = reg.currentEpoch();
        vm.prank(s1);
        reg.attestCredit(e, ops, scores);
    }

    function test_gas_proposal() public {
        registerNode(ALICE);
        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.Slash, abi.encode(ALICE, 0.1 ether, "forged records"));
        vm.prank(s2);
        reg.approve(id);
        reg.execute(id);
    }

    function test_gas_addStewardProposal() public {
        vm.prank(s1);
        uint256 id = reg.propose(ICnodeRegistry.ProposalKind.AddSteward, abi.encode(BOB));
        vm.prank(s2);
        reg.approve(id);
        reg.execute(id);
    }

    function test_gas_services() public {
        bytes32 key = reg.proposeService("org.cnode.events", "1.0.0", keccak256("pkg"), keccak256("manifest"));
        vm.prank(s1);
        reg.approveService(key);
        vm.prank(s2);
        reg.revokeService(key);
    }
}
