//! Identities: UUIDv4 ids, user ids, identity channels, exact exclusion, cids.

use tidings_core::{
    Channel, Cid, IdError, Identity, InstanceId, Peer, SeededEntropy, SessionId, UserId,
};

fn peer(user: Option<UserId>) -> Peer {
    let mut e = SeededEntropy::new(42);
    Peer {
        instance: InstanceId::mint(&mut e),
        session: SessionId::mint(&mut e),
        user,
    }
}

#[test]
fn minted_ids_are_lowercase_uuid_v4_and_parse_back() {
    let mut e = SeededEntropy::new(1);
    let a = InstanceId::mint(&mut e);
    let b = InstanceId::mint(&mut e);
    assert_ne!(a, b);
    let text = a.to_string();
    assert_eq!(text.len(), 36);
    assert_eq!(&text[14..15], "4");
    assert!(matches!(&text[19..20], "8" | "9" | "a" | "b"));
    assert_eq!(text, text.to_lowercase());
    assert_eq!(InstanceId::parse(&text).unwrap(), a);
    assert_eq!(InstanceId::parse(&text.to_uppercase()).unwrap(), a);
}

#[test]
fn seeded_entropy_replays_and_os_entropy_differs() {
    let a = SessionId::mint(&mut SeededEntropy::new(9));
    assert_eq!(a, SessionId::mint(&mut SeededEntropy::new(9)));
    let mut os = tidings_core::OsEntropy;
    assert_ne!(SessionId::mint(&mut os), SessionId::mint(&mut os));
}

#[test]
fn non_v4_and_non_hyphenated_ids_are_rejected() {
    for bad in [
        "",
        "not-a-uuid",
        "0b7e4f3a5c1d4e2f9a6b1c2d3e4f5a6b",
        "{0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b}",
        "0b7e4f3a-5c1d-1e2f-9a6b-1c2d3e4f5a6b",
        "0b7e4f3a-5c1d-4e2f-1a6b-1c2d3e4f5a6b",
        "0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6g",
    ] {
        let err = InstanceId::parse(bad).unwrap_err();
        assert!(
            matches!(
                err,
                IdError::NotUuidV4 {
                    kind: "instance_id",
                    ..
                }
            ),
            "{bad}"
        );
        assert!(
            err.to_string().starts_with("instance_id must be a UUIDv4"),
            "{err}"
        );
    }
    assert!(SessionId::parse("0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b").is_ok());
}

#[test]
fn ids_serialize_as_their_text() {
    let id = InstanceId::parse("0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b").unwrap();
    let json = serde_json::to_string(&id).unwrap();
    assert_eq!(json, "\"0b7e4f3a-5c1d-4e2f-9a6b-1c2d3e4f5a6b\"");
    assert_eq!(serde_json::from_str::<InstanceId>(&json).unwrap(), id);
    assert!(serde_json::from_str::<InstanceId>("\"nope\"").is_err());
    assert_eq!(serde_json::to_string(&UserId::int(7)).unwrap(), "7");
    assert_eq!(
        serde_json::from_str::<UserId>("\"7\"").unwrap(),
        UserId::str("7")
    );
}

#[test]
fn exclusion_matches_exact_values_at_each_level() {
    let p = peer(Some(UserId::int(1)));
    assert!(p.is_excluded_by(&[Identity::Instance(p.instance)]));
    assert!(p.is_excluded_by(&[Identity::Session(p.session)]));
    assert!(p.is_excluded_by(&[Identity::User(UserId::int(1))]));
    assert!(!p.is_excluded_by(&[Identity::User(UserId::str("1"))]));
    assert!(!p.is_excluded_by(&[Identity::User(UserId::atom("1").unwrap())]));
    assert!(!p.is_excluded_by(&[]));
    let other = peer(None);
    let mut e = SeededEntropy::new(5);
    assert!(!p.is_excluded_by(&[
        Identity::Instance(InstanceId::mint(&mut e)),
        Identity::User(UserId::int(2))
    ]));
    assert!(p.is_excluded_by(&[
        Identity::User(UserId::int(2)),
        Identity::Session(other.session)
    ]));
}

#[test]
fn anonymous_peers_are_never_excluded_by_a_user() {
    let anon = peer(None);
    assert!(!anon.is_excluded_by(&[Identity::User(UserId::atom("nil").unwrap())]));
    assert!(!anon.is_excluded_by(&[Identity::User(UserId::int(0))]));
}

#[test]
fn identity_channels_round_trip() {
    let mut e = SeededEntropy::new(3);
    for id in [
        Identity::Instance(InstanceId::mint(&mut e)),
        Identity::Session(SessionId::mint(&mut e)),
        Identity::User(UserId::int(7)),
        Identity::User(UserId::str("alice")),
        Identity::User(UserId::atom("admin").unwrap()),
    ] {
        let ch = id.to_channel();
        assert_eq!(Identity::from_channel(&ch).unwrap(), id, "{ch}");
    }
    assert_eq!(
        Identity::User(UserId::int(7)).to_channel().to_string(),
        "{:user, 7}"
    );
    for bad in [
        "{:room, 1}",
        ":user",
        "{:user, 1, 2}",
        "{:instance, \"x\"}",
        "{:session, 5}",
    ] {
        assert!(
            Identity::from_channel(&Channel::parse(bad).unwrap()).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn cids_reserve_page_and_layout_and_bound_length() {
    assert_eq!(Cid::new("page").unwrap(), Cid::PAGE);
    assert_eq!(Cid::LAYOUT.as_str(), "layout");
    assert_eq!(Cid::new("comp_1").unwrap().as_str(), "comp_1");
    assert_eq!(
        Cid::new("").unwrap_err().to_string(),
        "component id must have 1 to 128 bytes; got 0"
    );
    assert!(Cid::new(&"c".repeat(129)).is_err());
    assert!(Cid::new(&"c".repeat(128)).is_ok());
}
