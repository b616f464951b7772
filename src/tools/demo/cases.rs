//! The demo's cases, one per corridor: who sends which published example,
//! in reply to which earlier step, with which fields changed.

use serde_json::{Value, json};

use super::CASE_REF;

/// One message of a demo case: who sends it (the case's host, where the
/// person was identified, or its origin), from which published example, in
/// reply to which earlier step, with which payload fields changed.
pub(super) struct Step {
    pub(super) host_sends: bool,
    pub(super) example: &'static str,
    pub(super) reply_to: Option<usize>,
    pub(super) patch: fn(&mut Value),
    pub(super) what: &'static str,
}

fn same(_: &mut Value) {}

/// The published examples record handovers on set dates; the demo's
/// happen now, so this year's statistics count them.
fn handed_over_now(p: &mut Value) {
    p["handed_over_at"] = json!(crate::clock::rfc3339_ms(crate::clock::system().now_ms()));
}

macro_rules! example {
    ($path:literal) => {
        include_str!(concat!("../../../schemas/examples/", $path, ".json"))
    };
}

/// One case on one corridor.
pub(super) struct DemoCase {
    pub(super) case_ref: &'static str,
    pub(super) host: &'static str,
    pub(super) origin: &'static str,
    pub(super) title: &'static str,
    pub(super) steps: &'static [Step],
}

const TH_STEPS: &[Step] = &[
    Step {
        host_sends: true,
        example: example!("referral.notify/valid-child-estimated-age"),
        reply_to: None,
        patch: same,
        what: "Thailand refers a presumed victim, a Cambodian girl, to Cambodia",
    },
    Step {
        host_sends: false,
        example: example!("referral.acknowledge/valid-accepted"),
        reply_to: Some(0),
        patch: same,
        what: "Cambodia's case system reads its inbox and accepts the case",
    },
    Step {
        host_sends: true,
        example: example!("family-tracing.request/valid-girl-referred"),
        reply_to: None,
        patch: same,
        what: "Thailand asks Cambodia to trace and assess the family",
    },
    Step {
        host_sends: false,
        example: example!("family-tracing.result/valid-family-found-safe"),
        reply_to: Some(2),
        patch: same,
        what: "Cambodia reports: nationality verified, family found, safe to return",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.request/v2/valid-poipet-through-the-embassy"),
        reply_to: None,
        patch: same,
        what: "Thailand proposes return by land at gate POIPET (schema v2: gate and return channel)",
    },
    Step {
        host_sends: false,
        example: example!("repatriation.confirm/valid-accepted"),
        reply_to: Some(4),
        patch: same,
        what: "Cambodia accepts; MOSVY's Poipet transit centre will receive her",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.handover/v2/valid-handover-at-poipet"),
        reply_to: None,
        patch: handed_over_now,
        what: "Thailand records the handover at Poipet–Aranyaprathet",
    },
    Step {
        host_sends: false,
        example: example!("repatriation.handover/v2/valid-countersignature-at-poipet"),
        reply_to: Some(6),
        patch: handed_over_now,
        what: "Cambodia countersigns the handover",
    },
    Step {
        host_sends: false,
        example: example!("reintegration.report/valid-three-months-open"),
        reply_to: None,
        patch: same,
        what: "Cambodia reports on reintegration after three months",
    },
    Step {
        host_sends: false,
        example: example!("reintegration.report/valid-twelve-months-closed"),
        reply_to: None,
        patch: same,
        what: "Cambodia's twelve-month report closes the case",
    },
];

fn vn_handover(p: &mut Value) {
    handed_over_now(p);
    p["gate"] = json!("BAVET");
    p["place"] = json!("Bavet–Moc Bai international checkpoint");
    p["persons"] = json!(["VN-P1"]);
}

const VN_STEPS: &[Step] = &[
    Step {
        host_sends: true,
        example: example!("referral.notify/v2/valid-fisherman-recruited-by-broker"),
        reply_to: None,
        patch: same,
        what: "Vietnam refers a Cambodian man recruited by a broker (schema v2)",
    },
    Step {
        host_sends: false,
        example: example!("referral.acknowledge/valid-accepted"),
        reply_to: Some(0),
        patch: same,
        what: "Cambodia accepts the case",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.request/v2/valid-bavet-without-crossing-point"),
        reply_to: None,
        patch: same,
        what: "Vietnam proposes return by land at gate BAVET, through the embassy and the interior ministry",
    },
    Step {
        host_sends: false,
        example: example!("repatriation.confirm/valid-accepted"),
        reply_to: Some(2),
        patch: same,
        what: "Cambodia accepts the return",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.handover/v2/valid-handover-at-poipet"),
        reply_to: None,
        patch: vn_handover,
        what: "Vietnam records the handover at Bavet–Moc Bai",
    },
];

const MY_STEPS: &[Step] = &[
    Step {
        host_sends: true,
        example: example!("referral.notify/v2/valid-fisherman-recruited-by-broker"),
        reply_to: None,
        patch: same,
        what: "Malaysia refers a Cambodian fisherman (schema v2)",
    },
    Step {
        host_sends: false,
        example: example!("referral.acknowledge/valid-accepted"),
        reply_to: Some(0),
        patch: same,
        what: "Cambodia accepts the case",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.request/v2/valid-fishermen-flown-home-by-ngo"),
        reply_to: None,
        patch: same,
        what: "Malaysia proposes to fly three fishermen home, KUL to Phnom Penh (answer due in business days)",
    },
    Step {
        host_sends: false,
        example: example!("repatriation.confirm/valid-accepted"),
        reply_to: Some(2),
        patch: same,
        what: "Cambodia accepts the return",
    },
    Step {
        host_sends: true,
        example: example!("repatriation.handover/v2/valid-group-at-phnom-penh-airport"),
        reply_to: None,
        patch: handed_over_now,
        what: "Malaysia records the handover of two of them at the airport",
    },
];

pub(super) const CASES: &[DemoCase] = &[
    DemoCase {
        case_ref: CASE_REF,
        host: "TH",
        origin: "KH",
        title: "KH–TH, by land at Poipet",
        steps: TH_STEPS,
    },
    DemoCase {
        case_ref: "VN-KH-2026-000043",
        host: "VN",
        origin: "KH",
        title: "KH–VN, by land at Bavet–Moc Bai",
        steps: VN_STEPS,
    },
    DemoCase {
        case_ref: "MY-KH-2026-000044",
        host: "MY",
        origin: "KH",
        title: "KH–MY, by air",
        steps: MY_STEPS,
    },
];
