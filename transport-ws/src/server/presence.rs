//! Presence on the wire (P§4.1): `{key: {"metas": [{"phx_ref": …, …meta}]}}`
//! for `presence_state`, and `{"joins": …, "leaves": …}` for `presence_diff`.

use tidings_core::presence::{Diff, Meta, Presences};

fn meta_json(out: &mut String, meta: &Meta) {
    let body = std::str::from_utf8(meta.payload.as_bytes()).unwrap_or("{}");
    // The payload is a JSON object; its fields follow the refs.
    let rest = body.trim().strip_prefix('{').unwrap_or("}").trim_start();
    out.push_str(r#"{"phx_ref":"#);
    out.push_str(&serde_json::to_string(&meta.phx_ref).expect("strings serialize"));
    if let Some(prev) = &meta.phx_ref_prev {
        out.push_str(r#","phx_ref_prev":"#);
        out.push_str(&serde_json::to_string(prev).expect("strings serialize"));
    }
    if !rest.starts_with('}') {
        out.push(',');
    }
    out.push_str(rest);
}

fn presences_json(out: &mut String, presences: &Presences) {
    out.push('{');
    for (i, (key, metas)) in presences.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&serde_json::to_string(key).expect("strings serialize"));
        out.push_str(r#":{"metas":["#);
        for (j, meta) in metas.iter().enumerate() {
            if j > 0 {
                out.push(',');
            }
            meta_json(out, meta);
        }
        out.push_str("]}");
    }
    out.push('}');
}

/// A `presence_state` payload.
///
/// ```
/// use tidings_core::presence::{Meta, Presences};
/// use tidings_core::Payload;
/// use tidings_ws::server::presence::state_json;
/// let mut p = Presences::new();
/// p.insert("u1".into(), vec![Meta { phx_ref: "A".into(), phx_ref_prev: None,
///     payload: Payload::new(&br#"{"name":"alice"}"#[..]) }]);
/// assert_eq!(state_json(&p), r#"{"u1":{"metas":[{"phx_ref":"A","name":"alice"}]}}"#);
/// ```
pub fn state_json(presences: &Presences) -> String {
    let mut out = String::with_capacity(64);
    presences_json(&mut out, presences);
    out
}

/// A `presence_diff` payload.
///
/// ```
/// use tidings_core::presence::{Diff, Meta};
/// use tidings_core::Payload;
/// use tidings_ws::server::presence::diff_json;
/// let mut d = Diff::default();
/// d.leaves.insert("u1".into(), vec![Meta { phx_ref: "B".into(), phx_ref_prev: Some("A".into()),
///     payload: Payload::new(&b"{}"[..]) }]);
/// assert_eq!(diff_json(&d), r#"{"joins":{},"leaves":{"u1":{"metas":[{"phx_ref":"B","phx_ref_prev":"A"}]}}}"#);
/// ```
pub fn diff_json(diff: &Diff) -> String {
    let mut out = String::with_capacity(96);
    out.push_str(r#"{"joins":"#);
    presences_json(&mut out, &diff.joins);
    out.push_str(r#","leaves":"#);
    presences_json(&mut out, &diff.leaves);
    out.push('}');
    out
}
