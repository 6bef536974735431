use super::*;
use serde_json::json;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-12-06 10:00:00.750 UTC);
const STAMP: &str = "2026-12-06T10:00:00Z";

pub(crate) fn marks(labels: Value, annotations: Value) -> Marks {
    Marks::of_metadata(
        json!({ "labels": labels, "annotations": annotations })
            .as_object()
            .unwrap(),
    )
}

#[test]
fn the_opt_out_rule_is_one_for_every_part() {
    for value in ["false", "False", "FALSE", "disabled", "Disabled"] {
        assert!(opts_out(value), "{value}");
    }
    for value in ["true", "", "no", "0", "off", "enabled"] {
        assert!(!opts_out(value), "{value}");
    }
    let m = marks(
        json!({}),
        json!({
            archive::OPT_OUT_ANNOTATION: "disabled",
            quarantine::OPT_OUT_ANNOTATION: "Disabled",
            mirror::OPT_OUT_ANNOTATION: "FALSE",
            lane::OPT_OUT_ANNOTATION: "false",
        }),
    );
    assert_eq!(
        m.opt_out,
        OptOuts {
            janitor: true,
            breaker: true,
            mirror: true,
            lane: true
        }
    );
    assert_eq!(marks(json!({}), json!({})).opt_out, OptOuts::default());
}

#[test]
fn parses_every_family_once() {
    let m = marks(
        json!({ archive::LABEL: "true", quarantine::LABEL: "true", "app": "x" }),
        json!({
            archive::AT_ANNOTATION: "2026-12-01T00:00:00Z",
            archive::REASON_ANNOTATION: "failing for 8 days",
            archive::RULE_ANNOTATION: "failing",
            quarantine::HOST_ANNOTATION: "github.com",
            quarantine::AT_ANNOTATION: "2026-12-05T10:00:00Z",
            quarantine::REASON_ANNOTATION: "host down",
            stamps::RELEASED_AT_ANNOTATION: "2026-12-05T11:00:00Z",
            stamps::OVERRIDDEN_AT_ANNOTATION: "not a time",
            stamps::RESTORED_AT_ANNOTATION: "2026-12-05T12:00:00Z",
            mirror::ORIGINAL_URL_ANNOTATION: "https://github.com/o/r",
        }),
    );
    let archive = m.archive.as_ref().unwrap();
    assert_eq!(archive.at, Some(datetime!(2026-12-01 00:00 UTC)));
    assert_eq!(archive.rule.as_deref(), Some("failing"));
    assert_eq!(archive.reason.as_deref(), Some("failing for 8 days"));
    let quarantine = m.quarantine.as_ref().unwrap();
    assert_eq!(quarantine.host.as_deref(), Some("github.com"));
    assert_eq!(quarantine.at, Some(datetime!(2026-12-05 10:00 UTC)));
    assert_eq!(m.released_at, Some(datetime!(2026-12-05 11:00 UTC)));
    assert_eq!(m.overridden_at, None, "a garbled time counts as absent");
    assert_eq!(m.restored_at, Some(datetime!(2026-12-05 12:00 UTC)));
    assert_eq!(m.let_run_at(), Some(datetime!(2026-12-05 12:00 UTC)));
    assert_eq!(m.original_url.as_deref(), Some("https://github.com/o/r"));
}

#[test]
fn a_label_other_than_true_is_no_mark_and_wrong_types_are_ignored() {
    let m = marks(
        json!({ archive::LABEL: "yes", quarantine::LABEL: true }),
        json!({ quarantine::AT_ANNOTATION: 3 }),
    );
    assert_eq!(m, Marks::default());
    let odd = Marks::of_metadata(
        json!({ "labels": "not a map", "annotations": [1] })
            .as_object()
            .unwrap(),
    );
    assert_eq!(odd, Marks::default());
}

#[test]
fn every_form_of_an_object_reads_alike() {
    let metadata = json!({
        "name": "app", "namespace": "ns",
        "labels": { quarantine::LABEL: "true" },
        "annotations": { quarantine::HOST_ANNOTATION: "github.com",
                         quarantine::OPT_OUT_ANNOTATION: "disabled" },
    });
    let object: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": crate::flux::API_VERSION, "kind": crate::flux::KIND, "metadata": metadata,
    }))
    .unwrap();
    assert_eq!(
        Marks::of_object(&object),
        Marks::of_metadata(metadata.as_object().unwrap())
    );
}

/// Applies a merge patch to an object, as the API server would (RFC 7386).
fn merged(object: &Value, patch: &Value) -> Value {
    let mut object = object.clone();
    json_patch::merge(&mut object, patch);
    object
}

fn marks_after(object: &Value) -> Marks {
    Marks::of_metadata(object["metadata"].as_object().unwrap())
}

fn quarantined_object() -> Value {
    json!({
        "metadata": {
            "labels": { quarantine::LABEL: "true", "team": "a" },
            "annotations": {
                quarantine::HOST_ANNOTATION: "github.com",
                quarantine::AT_ANNOTATION: "2026-12-06T09:00:00Z",
                quarantine::REASON_ANNOTATION: "down",
                "other": "kept",
            },
        },
        "spec": { "suspend": true, "url": "https://github.com/o/r" },
    })
}

#[test]
fn archive_then_restore_leaves_no_archive_mark() {
    let object = json!({ "metadata": { "labels": { "team": "a" } }, "spec": { "suspend": false } });
    let archive = Change::Archive {
        rule: "failing".into(),
        reason: "failing for 8 days".into(),
    };
    let archived = merged(&object, &archive.patch(NOW).unwrap());
    assert_eq!(archived["spec"]["suspend"], true);
    let m = marks_after(&archived);
    assert_eq!(m.archive.as_ref().unwrap().rule.as_deref(), Some("failing"));
    assert_eq!(
        m.archive.as_ref().unwrap().at,
        Some(datetime!(2026-12-06 10:00 UTC))
    );

    let lifted = Lifted::of(&m);
    assert_eq!(lifted.archive.as_deref(), Some("failing"));
    let restored = merged(&archived, &Change::Restore { lifted }.patch(NOW).unwrap());
    assert_eq!(restored["spec"]["suspend"], false);
    assert_eq!(restored["metadata"]["labels"], json!({ "team": "a" }));
    let after = marks_after(&restored);
    assert_eq!(after.archive, None);
    assert_eq!(after.restored_at, Some(datetime!(2026-12-06 10:00 UTC)));
    assert_eq!(
        restored["metadata"]["annotations"][crate::flux::REQUESTED_AT_ANNOTATION],
        STAMP
    );
}

#[test]
fn quarantine_release_and_acknowledge_write_only_their_marks() {
    let object = json!({ "metadata": {}, "spec": { "suspend": false } });
    let quarantine = Change::Quarantine {
        host: "github.com".into(),
        reason: "down".into(),
    };
    let held = merged(&object, &quarantine.patch(NOW).unwrap());
    assert_eq!(held["spec"]["suspend"], true);
    let q = marks_after(&held).quarantine.unwrap();
    assert_eq!(q.host.as_deref(), Some("github.com"));
    assert_eq!(q.reason.as_deref(), Some("down"));

    let release = Change::Release {
        host: "github.com".into(),
        canary: true,
    };
    let released = merged(&held, &release.patch(NOW).unwrap());
    assert_eq!(released["spec"]["suspend"], false);
    let m = marks_after(&released);
    assert_eq!(m.quarantine, None);
    assert_eq!(m.released_at, Some(datetime!(2026-12-06 10:00 UTC)));
    assert_eq!(m.overridden_at, None);
    assert_eq!(
        released["metadata"]["annotations"][crate::flux::REQUESTED_AT_ANNOTATION],
        STAMP
    );

    // Someone else unsuspended it: only fluxgate's marks change, never the spec.
    let mut unsuspended = quarantined_object();
    unsuspended["spec"]["suspend"] = json!(false);
    let ack = Change::AcknowledgeOverride {
        host: "github.com".into(),
    };
    let patch = ack.patch(NOW).unwrap();
    assert!(patch.get("spec").is_none());
    assert!(
        patch["metadata"]["annotations"]
            .get(crate::flux::REQUESTED_AT_ANNOTATION)
            .is_none()
    );
    let acknowledged = merged(&unsuspended, &patch);
    let m = marks_after(&acknowledged);
    assert_eq!(m.quarantine, None);
    assert_eq!(m.overridden_at, Some(datetime!(2026-12-06 10:00 UTC)));
    assert_eq!(acknowledged["metadata"]["annotations"]["other"], "kept");
}

#[test]
fn a_persons_restore_of_a_quarantined_object_is_an_override_for_the_episode() {
    let object = quarantined_object();
    let lifted = Lifted::of(&marks_after(&object));
    assert_eq!(lifted.quarantine.as_deref(), Some("github.com"));
    let change = Change::Restore { lifted };
    assert!(!change.judged_on_a_version(), "a person's restore wins");
    let restored = merged(&object, &change.patch(NOW).unwrap());
    assert_eq!(restored["spec"]["suspend"], false);
    let m = marks_after(&restored);
    assert_eq!(m.quarantine, None);
    assert_eq!(m.overridden_at, Some(datetime!(2026-12-06 10:00 UTC)));
    // The episode that held it began before the restore: the override covers it, and not the
    // next episode.
    assert!(m.overrides_episode(datetime!(2026-12-06 09:00 UTC)));
    assert!(m.overrides_episode(datetime!(2026-12-06 10:00 UTC)));
    assert!(!m.overrides_episode(datetime!(2026-12-06 10:00:01 UTC)));
    assert_eq!(restored["metadata"]["annotations"]["other"], "kept");
    assert_eq!(restored["metadata"]["labels"], json!({ "team": "a" }));

    let event = change.event();
    assert_eq!(event.reason, "Restored");
    assert!(
        event.note.contains("quarantine for github.com"),
        "{}",
        event.note
    );
    assert!(!event.note.contains("archive"), "{}", event.note);
}

#[test]
fn decisions_are_conditional_and_a_persons_or_a_note_are_not() {
    let conditional = [
        Change::Archive {
            rule: "r".into(),
            reason: "x".into(),
        },
        Change::Delete {
            rule: "r".into(),
            reason: "x".into(),
        },
        Change::Quarantine {
            host: "h".into(),
            reason: "x".into(),
        },
        Change::Release {
            host: "h".into(),
            canary: false,
        },
    ];
    for change in &conditional {
        assert!(change.judged_on_a_version(), "{change:?}");
    }
    assert!(
        Change::Delete {
            rule: "r".into(),
            reason: "x".into()
        }
        .patch(NOW)
        .is_none()
    );
}

#[test]
fn events_name_what_happened_and_fit_the_api_limit() {
    let long = "x".repeat(4000);
    let change = Change::Quarantine {
        host: "github.com".into(),
        reason: long,
    };
    let event = change.event();
    assert!(event.warning);
    assert_eq!((event.reason, event.action), ("Quarantined", "Quarantine"));
    assert!(event.note.len() <= EVENT_NOTE_LIMIT);
    let quarantine = Change::Quarantine {
        host: "github.com".into(),
        reason: "down".into(),
    }
    .event();
    assert!(
        quarantine
            .note
            .contains("fluxgate restore --quarantined --host github.com"),
        "{}",
        quarantine.note
    );
    let nothing = Change::Restore {
        lifted: Lifted::default(),
    }
    .event();
    assert!(
        nothing.note.contains("no fluxgate marks"),
        "{}",
        nothing.note
    );
    let archive = Change::Restore {
        lifted: Lifted {
            archive: Some("stale_test".into()),
            quarantine: None,
            lane: None,
        },
    }
    .event();
    assert!(
        archive.note.contains("archive (rule stale_test)"),
        "{}",
        archive.note
    );
}

#[test]
fn a_lane_move_and_its_way_back_touch_only_labels_and_fluxgates_marks() {
    let object = json!({ "metadata": { "labels": { "team": "a" } }, "spec": { "suspend": false } });
    let to_lane = Change::MoveToLane {
        host: "github.com".into(),
        shard: "far".into(),
        reason: "down".into(),
    };
    assert!(to_lane.judged_on_a_version());
    let patch = to_lane.patch(NOW).unwrap();
    assert!(patch.get("spec").is_none(), "never suspended");
    let moved = merged(&object, &patch);
    assert_eq!(moved["metadata"]["labels"][crate::flux::SHARD_LABEL], "far");
    let m = marks_after(&moved);
    let lane_move = m.lane_move.clone().unwrap();
    assert_eq!(lane_move.shard.as_deref(), Some("far"));
    assert_eq!(lane_move.host.as_deref(), Some("github.com"));
    assert_eq!(lane_move.at, Some(datetime!(2026-12-06 10:00 UTC)));
    assert_eq!(m.quarantine, None);

    let back = Change::MoveBack {
        host: "github.com".into(),
        canary: false,
    };
    let patch = back.patch(NOW).unwrap();
    assert!(patch.get("spec").is_none());
    let returned = merged(&moved, &patch);
    assert_eq!(returned["metadata"]["labels"], json!({ "team": "a" }));
    let m = marks_after(&returned);
    assert_eq!(m.lane_move, None);
    assert_eq!(m.released_at, Some(datetime!(2026-12-06 10:00 UTC)));
    assert_eq!(
        returned["metadata"]["annotations"][crate::flux::REQUESTED_AT_ANNOTATION],
        STAMP
    );
    assert_eq!(to_lane.event().reason, "MovedToLane");
    assert_eq!(back.event().reason, "MovedBack");
    assert_eq!((to_lane.name(), back.name()), ("quarantine", "release"));
}

#[test]
fn a_restore_leaves_a_lane_only_when_fluxgate_put_it_there() {
    // The breaker moved it: restored to the main source-controller.
    let moved = json!({ "metadata": { "labels": { crate::flux::SHARD_LABEL: "far", lane::MOVED_LABEL: "true" },
        "annotations": { lane::HOST_ANNOTATION: "github.com" } }, "spec": {} });
    let lifted = Lifted::of(&marks_after(&moved));
    assert_eq!(lifted.lane.as_deref(), Some("far"));
    let restored = merged(
        &moved,
        &Change::Restore {
            lifted: lifted.clone(),
        }
        .patch(NOW)
        .unwrap(),
    );
    assert_eq!(restored["metadata"]["labels"], json!({}));
    assert!(
        Change::Restore { lifted }
            .event()
            .note
            .contains("move to lane far")
    );
    // A creator's own shard (or a static --lane rule's) stays.
    let own = json!({ "metadata": { "labels": { crate::flux::SHARD_LABEL: "far", archive::LABEL: "true" } },
        "spec": { "suspend": true } });
    let lifted = Lifted::of(&marks_after(&own));
    assert_eq!(lifted.lane, None);
    let restored = merged(&own, &Change::Restore { lifted }.patch(NOW).unwrap());
    assert_eq!(
        restored["metadata"]["labels"],
        json!({ crate::flux::SHARD_LABEL: "far" })
    );
}

#[test]
fn acknowledging_a_move_out_of_the_lane_keeps_whatever_shard_the_person_chose() {
    // Someone took it out of the breaker's lane (the shard label removed or changed).
    let moved_out = json!({ "metadata": { "labels": { lane::MOVED_LABEL: "true", crate::flux::SHARD_LABEL: "mine" },
        "annotations": { lane::HOST_ANNOTATION: "github.com" } }, "spec": {} });
    let ack = Change::AcknowledgeOverride {
        host: "github.com".into(),
    };
    let after = merged(&moved_out, &ack.patch(NOW).unwrap());
    assert_eq!(
        after["metadata"]["labels"],
        json!({ crate::flux::SHARD_LABEL: "mine" })
    );
    let m = marks_after(&after);
    assert_eq!(m.lane_move, None);
    assert_eq!(m.overridden_at, Some(datetime!(2026-12-06 10:00 UTC)));
}
