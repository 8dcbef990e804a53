//! The client's receipt store stays in step with what the router holds:
//! cases where a receipt would otherwise name the wrong user or binding.

mod common;

use common::{Fixture, cid, key, user};
use tidings_core::router::Output;
use tidings_core::{Effects, Identity};

// R11: a logout render re-declares a key the client claims with a receipt
// signed for the old user; the binding is retagged anonymous, so the client
// must get a fresh anonymous receipt or its next handshake drops the binding.
#[test]
fn a_render_that_changes_the_user_reissues_claimed_receipts() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    f.connect_with(0, &p, &[(":a", "page")]);
    let mut fx = Effects::init(&p, cid("page"));
    fx.put_subscription(":a").unwrap();
    fx.set_user_id(None);
    let c = f
        .router
        .commit_page(10, &p, vec![fx], &[key(":a", "page")])
        .unwrap();
    assert_eq!(c.receipt_adds.len(), 1);
    let r = f
        .router
        .verify_receipt(&c.receipt_adds[0].token, 10)
        .unwrap();
    assert_eq!(r.user, None);
    let anonymous = tidings_core::Peer { user: None, ..p };
    assert!(f.accepts(20, &anonymous, &c.receipt_adds[0].token));
}

// R10: subscribing again to a binding that is anonymous keeps its tag, so
// the receipt pushed must be anonymous too (not signed for the current user).
#[test]
fn a_resubscribe_signs_the_receipt_for_the_bindings_own_tag() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":a", "page")]);
    // Log in: the anonymous binding survives and stays anonymous.
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(1));
    f.commit(5, fx);
    f.drain();
    f.router
        .subscribe(10, &Identity::Instance(p.instance), ":a", cid("page"))
        .unwrap();
    let pushed = f.drain().into_iter().find_map(|o| match o {
        Output::AddReceipts { receipts, .. } => Some(receipts),
        _ => None,
    });
    let receipts = pushed.expect("add_sub_receipts");
    let r = f.router.verify_receipt(&receipts[0].token, 10).unwrap();
    assert_eq!(r.user, None, "the binding is anonymous, so is its receipt");
    assert!(!f.bindings(&tidings_core::Peer { user: user(1), ..p })[0].1);
}

// R2: a superseding stream keeps the prior bindings, so the client, which
// just replaced its store with the handshake's receipts, is resynced: all
// bound keys refreshed, stash keys that are not bound dropped.
#[test]
fn a_supersede_resyncs_the_clients_receipts_with_the_prior_bindings() {
    let mut f = Fixture::new();
    let p = f.peer(None);
    f.connect_with(0, &p, &[(":kept", "page")]);
    let other = f.token_for(0, &p, ":other", "page");
    let conn = f.attach(10, &p, &[&other]);
    let out = f.drain();
    assert!(out.iter().any(|o| matches!(o, Output::Close { .. })));
    let refreshed = out.iter().find_map(|o| match o {
        Output::RefreshReceipts { conn: c, receipts } if *c == conn => Some(receipts.clone()),
        _ => None,
    });
    let refreshed = refreshed.expect("refresh_sub_receipts for the new stream");
    assert_eq!(refreshed.len(), 1);
    assert_eq!(refreshed[0].channel.to_string(), ":kept");
    let dropped = out.iter().find_map(|o| match o {
        Output::DropReceipts { conn: c, keys } if *c == conn => Some(keys.clone()),
        _ => None,
    });
    assert_eq!(dropped, Some(vec![key(":other", "page")]));
    assert_eq!(f.keys(&p), vec![key(":kept", "page")]);
}

// R5: a handler that logs in and puts a subscription it already holds must
// keep it: the binding is re-authorized by the new user (else R8 would drop
// it as authorized by another user) and the client gets a fresh receipt.
#[test]
fn a_put_again_while_changing_the_user_keeps_the_binding() {
    let mut f = Fixture::new();
    let p = f.peer(user(1));
    f.connect(0, &p);
    let mut fx = f.command(&p, "page");
    fx.put_subscription("{:room, 1}").unwrap();
    f.commit(1, fx);
    f.drain();
    let mut fx = f.command(&p, "page");
    fx.set_user_id(user(2));
    fx.put_subscription("{:room, 1}").unwrap();
    let c = f.commit(2, fx);
    assert_eq!(c.receipt_adds.len(), 1);
    let r = f
        .router
        .verify_receipt(&c.receipt_adds[0].token, 2)
        .unwrap();
    assert_eq!(r.user, user(2));
    let now = tidings_core::Peer { user: user(2), ..p };
    assert_eq!(f.bindings(&now), vec![(key("{:room, 1}", "page"), true)]);
    assert!(
        !f.drain()
            .iter()
            .any(|o| matches!(o, Output::DropReceipts { .. } | Output::ChannelDown(_))),
        "the binding must not be dropped"
    );
}
