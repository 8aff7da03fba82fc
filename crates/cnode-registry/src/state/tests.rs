use alloy::primitives::{Address, B256, Bytes, FixedBytes, U256};

use super::*;
use crate::bindings::ICnodeRegistry as I;

pub(crate) fn op(n: u8) -> Address {
    Address::repeat_byte(n)
}

pub(crate) fn region(s: &str) -> FixedBytes<4> {
    FixedBytes(s.as_bytes().try_into().expect("4 bytes"))
}

pub(crate) fn registered(n: u8, regions: &[&str]) -> RegistryEvents {
    RegistryEvents::NodeRegistered(I::NodeRegistered {
        operator: op(n),
        peerId: Bytes::from(vec![n; 8]),
        multiaddrs: vec![format!("/ip4/10.0.0.{n}/tcp/4040")],
        regions: regions.iter().map(|r| region(r)).collect(),
        stake: U256::from(1000),
    })
}

pub(crate) fn route(r: &str, ops: &[u8]) -> RegistryEvents {
    RegistryEvents::RouteSet(I::RouteSet {
        region: region(r),
        operators: ops.iter().map(|n| op(*n)).collect(),
    })
}

fn ev(block: u64, index: u64, event: RegistryEvents) -> AppliedEvent {
    AppliedEvent {
        block,
        block_hash: B256::with_last_byte(block as u8),
        log_index: index,
        tx_hash: None,
        event,
    }
}

fn w5q6() -> RegionId {
    "w5q6".parse().unwrap()
}

#[test]
fn nodes_and_routes() {
    let s = Snapshot::from_events([
        (1, &registered(1, &["w5q6"])),
        (1, &registered(2, &["w5q6", "w4rq"])),
        (2, &registered(3, &["w5q6", "zzzz", "bad!"])),
        (3, &route("w5q6", &[3, 1, 2, 9])),
    ]);
    assert_eq!(s.block(), Some(3));
    assert_eq!(s.nodes().count(), 3);
    let n3 = s.node(&op(3)).unwrap();
    assert_eq!(n3.peer_id_bytes.as_ref(), &[3u8; 8]);
    assert_eq!(n3.multiaddrs, vec!["/ip4/10.0.0.3/tcp/4040".to_owned()]);
    // Characters outside the geohash alphabet are not a region.
    assert_eq!(
        n3.regions,
        vec![w5q6(), "zzzz".parse::<RegionId>().unwrap()]
    );
    assert_eq!(n3.details_block, 2);
    // The route keeps the stewards' order and leaves out unknown operators.
    let order: Vec<Address> = s.route(&w5q6()).iter().map(|n| n.operator).collect();
    assert_eq!(order, vec![op(3), op(1), op(2)]);
    assert_eq!(s.route_operators(&w5q6()).len(), 4);
    assert!(s.route(&"w4rq".parse().unwrap()).is_empty());
}

#[test]
fn node_lifecycle() {
    let events = [
        registered(1, &["w5q6"]),
        route("w5q6", &[1]),
        RegistryEvents::NodeUpdated(I::NodeUpdated {
            operator: op(1),
            peerId: Bytes::from_static(b"new"),
            multiaddrs: vec!["/dns4/a.example/tcp/1".into()],
            regions: vec![region("w4rq")],
        }),
        RegistryEvents::StakeAdded(I::StakeAdded {
            operator: op(1),
            amount: U256::from(500),
            total: U256::from(1500),
        }),
        RegistryEvents::CreditUpdated(I::CreditUpdated {
            operator: op(1),
            epoch: 7,
            score: 900_000,
        }),
        RegistryEvents::Slashed(I::Slashed {
            operator: op(1),
            amount: U256::from(100),
            reason: "bad proofs".into(),
        }),
    ];
    let mut s = Snapshot::from_events(events.iter().enumerate().map(|(i, e)| (i as u64, e)));
    let n = s.node(&op(1)).unwrap();
    assert_eq!(n.peer_id_bytes.as_ref(), b"new");
    assert_eq!(n.regions, vec!["w4rq".parse::<RegionId>().unwrap()]);
    assert_eq!(n.stake, U256::from(1400));
    assert_eq!(
        s.credit(&op(1)),
        Some(Credit {
            score: 900_000,
            epoch: 7
        })
    );
    assert_eq!(s.route(&w5q6()).len(), 1);

    s.apply(
        10,
        &RegistryEvents::NodeDeregistered(I::NodeDeregistered {
            operator: op(1),
            unbondingEnds: 12345,
        }),
    );
    let n = s.node(&op(1)).unwrap();
    assert_eq!(n.status, NodeStatus::Unbonding);
    assert_eq!(n.unbonding_ends, 12345);
    // Still in the stored route, but not served.
    assert_eq!(s.route_operators(&w5q6()), &[op(1)]);
    assert!(s.route(&w5q6()).is_empty());

    s.apply(
        11,
        &RegistryEvents::StakeWithdrawn(I::StakeWithdrawn {
            operator: op(1),
            amount: U256::from(1400),
        }),
    );
    assert!(s.node(&op(1)).is_none());
    // Registering again starts with no credit.
    s.apply(12, &registered(1, &["w5q6"]));
    assert_eq!(s.credit(&op(1)), Some(Credit::default()));
    // An empty route removes the region.
    s.apply(13, &route("w5q6", &[]));
    assert!(s.routes().is_empty());
}

#[test]
fn services_stewards_params_proposals() {
    let key = crate::service_key("org.cnode.events", "1.0.0");
    let slash = ProposalAction::Slash {
        operator: op(5),
        amount: U256::from(7),
        reason: "spam".into(),
    };
    let (kind, data) = slash.encode().unwrap();
    let events = [
        RegistryEvents::StewardAdded(I::StewardAdded { steward: op(1) }),
        RegistryEvents::StewardAdded(I::StewardAdded { steward: op(2) }),
        RegistryEvents::StewardAdded(I::StewardAdded { steward: op(3) }),
        RegistryEvents::ThresholdChanged(I::ThresholdChanged {
            threshold: U256::from(2),
        }),
        RegistryEvents::ParamsChanged(I::ParamsChanged {
            minStake: U256::from(10),
            unbondingDelay: 60,
            proposalTtl: 3600,
        }),
        RegistryEvents::ServiceProposed(I::ServiceProposed {
            key,
            id: "org.cnode.events".into(),
            version: "1.0.0".into(),
            packageHash: B256::repeat_byte(0xaa),
            manifestHash: B256::repeat_byte(0xbb),
            publisher: op(9),
        }),
        RegistryEvents::ServiceApproved(I::ServiceApproved {
            key,
            steward: op(1),
        }),
        RegistryEvents::ProposalCreated(I::ProposalCreated {
            proposalId: U256::from(1),
            kind,
            data,
            proposer: op(1),
            expiresAt: 99,
        }),
        RegistryEvents::ProposalApproved(I::ProposalApproved {
            proposalId: U256::from(1),
            steward: op(2),
            approvals: U256::from(2),
        }),
        RegistryEvents::ProposalExecuted(I::ProposalExecuted {
            proposalId: U256::from(1),
        }),
        RegistryEvents::StewardRemoved(I::StewardRemoved { steward: op(1) }),
    ];
    let s = Snapshot::from_events(events.iter().map(|e| (1, e)));
    // The contract moves the last steward into the removed one's slot.
    assert_eq!(s.stewards().stewards, vec![op(3), op(2)]);
    assert_eq!(s.stewards().threshold, U256::from(2));
    assert_eq!(
        s.params(),
        Params {
            min_stake: U256::from(10),
            unbonding_delay: 60,
            proposal_ttl: 3600
        }
    );
    let svc = s.service(&key).unwrap();
    assert_eq!(svc.status, ServiceStatus::Approved);
    assert_eq!(svc.id, "org.cnode.events");
    assert_eq!(svc.publisher, op(9));
    let p = s.proposals().next().unwrap();
    assert_eq!(p.action, slash);
    assert_eq!(p.approvals, U256::from(2));
    assert!(p.executed);
}

#[test]
fn proposal_actions_round_trip() {
    let actions = [
        ProposalAction::AddSteward { steward: op(1) },
        ProposalAction::RemoveSteward { steward: op(2) },
        ProposalAction::SetThreshold {
            threshold: U256::from(3),
        },
        ProposalAction::Slash {
            operator: op(4),
            amount: U256::from(10).pow(U256::from(18)),
            reason: "lied about storage".into(),
        },
        ProposalAction::SetParams {
            params: Params {
                min_stake: U256::from(5),
                unbonding_delay: 7,
                proposal_ttl: 9,
            },
        },
    ];
    for a in actions {
        let (kind, data) = a.encode().unwrap();
        assert_eq!(ProposalAction::decode(kind, &data), a);
    }
    // Data that does not decode is kept as it came.
    let odd = ProposalAction::decode(ProposalKind::Slash, &Bytes::from_static(&[1, 2]));
    assert!(matches!(odd, ProposalAction::Unknown { kind: 3, .. }));
}

#[test]
fn snapshot_json_round_trip() {
    let s = Snapshot::from_events([(1, &registered(1, &["w5q6"])), (2, &route("w5q6", &[1]))]);
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<Snapshot>(&json).unwrap(), s);
}

fn sample_history() -> (History, Vec<AppliedEvent>) {
    let events = vec![
        ev(10, 0, registered(1, &["w5q6"])),
        ev(10, 1, registered(2, &["w5q6"])),
        ev(12, 0, registered(3, &["w5q6"])),
        ev(13, 0, route("w5q6", &[3, 2, 1])),
        ev(15, 0, registered(4, &["w5q6"])),
    ];
    let mut h = History::default();
    h.append(11, B256::with_last_byte(11), events[..2].to_vec());
    h.append(13, B256::with_last_byte(13), events[2..4].to_vec());
    h.append(16, B256::with_last_byte(16), events[4..].to_vec());
    (h, events)
}

#[test]
fn rollback_equals_the_prefix() {
    let (mut h, events) = sample_history();
    assert_eq!(h.applied(), Some(16));
    assert_eq!(h.current().nodes().count(), 4);
    assert_eq!(
        h.hashes().keys().copied().collect::<Vec<_>>(),
        vec![10, 11, 12, 13, 15, 16]
    );

    h.rollback(12);
    let mut expected = Snapshot::from_events(events[..3].iter().map(|e| (e.block, &e.event)));
    expected.block = Some(12);
    assert_eq!(**h.current(), expected);
    assert_eq!(h.applied(), Some(12));
    assert_eq!(h.events().len(), 3);
    assert!(h.current().route(&w5q6()).is_empty());

    // Applying other blocks after the rollback works as on a fresh history.
    h.append(
        14,
        B256::repeat_byte(0xee),
        vec![ev(14, 0, route("w5q6", &[1]))],
    );
    assert_eq!(h.current().route(&w5q6()).len(), 1);
    assert_eq!(h.current().block(), Some(14));
}

#[test]
fn compaction_keeps_the_state_and_the_window() {
    let (mut h, _) = sample_history();
    let before = h.current().clone();
    assert_eq!(h.compact(), None, "nothing is old yet");

    // Move far ahead: everything so far is older than the window.
    let far = 16 + HISTORY_BLOCKS + 5;
    h.append(far, B256::repeat_byte(0x77), vec![]);
    let c = h.compact().unwrap();
    assert_eq!(c.fold_through, far - HISTORY_BLOCKS);
    assert!(c.base_changed);
    assert!(h.events().is_empty());
    assert_eq!(h.hashes().keys().copied().collect::<Vec<_>>(), vec![far]);
    assert_eq!(h.base().nodes().count(), 4);
    let mut expect = (*before).clone();
    expect.block = Some(far);
    assert_eq!(**h.current(), expect);

    // A rollback inside the window re-derives from the base.
    h.append(
        far + 1,
        B256::repeat_byte(0x78),
        vec![ev(far + 1, 0, route("w5q6", &[4]))],
    );
    assert_eq!(h.current().route(&w5q6()).len(), 1);
    h.rollback(far);
    assert_eq!(h.current().route(&w5q6()).len(), 3);

    h.reset();
    assert_eq!(h.applied(), None);
    assert_eq!(h.current().nodes().count(), 0);
}
