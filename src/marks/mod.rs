//! Everything fluxgate writes on a GitRepository and reads back: its "marks".
//!
//! Two parts change users' objects — the janitor archives, the host circuit breaker quarantines —
//! and a person undoes either with `fluxgate restore`. They all go through this module:
//!
//! - the names of the labels and annotations, per family ([`archive`], [`quarantine`], the
//!   [`stamps`] of release, override and restore, the [`mirror`] and [`lane`] marks);
//! - [`Marks`]: a typed value parsed once from an object's labels and annotations, which the
//!   exporter's store, the health model, the breaker, the janitor and the report all read;
//! - [`opts_out`]: the one rule for every opt-out annotation;
//! - [`Change`]: what a part decided to do to one object, and the patch and Event that carry it
//!   out ([`Change::patch`], [`Change::event`]), built from plain values;
//! - [`writer::Writer`]: the one place that applies a change conditionally and records its Event.
//!
//! `fluxgate restore` ([`crate::restore`]) lifts them through the same writer.
//!
//! The janitor and the breaker only decide; what their decisions look like on an object is here.

pub mod writer;

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::flux::REQUESTED_AT_ANNOTATION;
use crate::text::rfc3339_seconds;

pub use writer::{Target, Writer, Written};

/// The janitor's archive marks (`kubectl get gitrepositories -l fluxgate.io/archived`).
pub mod archive {
    pub const LABEL: &str = "fluxgate.io/archived";
    pub const AT_ANNOTATION: &str = "fluxgate.io/archived-at";
    pub const REASON_ANNOTATION: &str = "fluxgate.io/archived-reason";
    pub const RULE_ANNOTATION: &str = "fluxgate.io/archived-rule";
    /// `"false"` (or `"disabled"`) keeps the janitor away from one GitRepository.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/janitor";
}

/// The host circuit breaker's marks (`kubectl get gitrepositories -l fluxgate.io/quarantined`).
pub mod quarantine {
    /// On every GitRepository the breaker suspended.
    pub const LABEL: &str = "fluxgate.io/quarantined";
    /// The host whose breaker quarantined the object.
    pub const HOST_ANNOTATION: &str = "fluxgate.io/quarantined-host";
    /// When it was quarantined (RFC 3339): a new leader reopens the breaker from the oldest one.
    pub const AT_ANNOTATION: &str = "fluxgate.io/quarantined-at";
    pub const REASON_ANNOTATION: &str = "fluxgate.io/quarantine-reason";
    /// `"false"` (or `"disabled"`) keeps the breaker away from one GitRepository.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/breaker";
}

/// Times fluxgate keeps after a mark is lifted (RFC 3339, whole seconds).
pub mod stamps {
    /// When the breaker last released the object, as a canary or in a batch.
    pub const RELEASED_AT_ANNOTATION: &str = "fluxgate.io/breaker-released-at";
    /// When an unsuspend of a quarantined object by anyone but the breaker — a person's `fluxgate
    /// restore`, or another writer's `spec.suspend: false` — was taken note of: the breaker leaves
    /// that object alone for the rest of the episode, also after a change of leader.
    pub const OVERRIDDEN_AT_ANNOTATION: &str = "fluxgate.io/quarantine-overridden-at";
    /// When `fluxgate restore` last ran: the janitor's rules count from here, not from the old
    /// failure.
    pub const RESTORED_AT_ANNOTATION: &str = "fluxgate.io/restored-at";
}

/// The mirror rules' marks (`fluxgate serve --mirror FROM=TO`).
pub mod mirror {
    /// The `spec.url` a GitRepository was created with, before a mirror rule rewrote it: who
    /// reads the object can tell, and undo.
    pub const ORIGINAL_URL_ANNOTATION: &str = "fluxgate.io/original-url";
    /// `"false"` (or `"disabled"`) on a GitRepository being created keeps its URL as written.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/mirror";
}

/// The host lanes' marks.
pub mod lane {
    /// `"false"` (or `"disabled"`) on a GitRepository being created keeps it out of any lane.
    pub const OPT_OUT_ANNOTATION: &str = "fluxgate.io/lane";
    /// On every GitRepository the breaker moved into its lane (`serve --breaker-lane SHARD`),
    /// besides Flux's `sharding.fluxcd.io/key`: only what fluxgate moved is moved back.
    pub const MOVED_LABEL: &str = "fluxgate.io/laned";
    /// The host whose breaker moved the object.
    pub const HOST_ANNOTATION: &str = "fluxgate.io/laned-host";
    /// When it was moved (RFC 3339).
    pub const AT_ANNOTATION: &str = "fluxgate.io/laned-at";
    pub const REASON_ANNOTATION: &str = "fluxgate.io/laned-reason";
}

/// The one rule for every opt-out annotation (`fluxgate.io/janitor`, `fluxgate.io/breaker`,
/// `fluxgate.io/mirror`, `fluxgate.io/lane`): `"false"` or `"disabled"`, in any letter case.
pub fn opts_out(value: &str) -> bool {
    value.eq_ignore_ascii_case("false") || value.eq_ignore_ascii_case("disabled")
}

/// Event notes are limited to 1 KiB by the API.
pub const EVENT_NOTE_LIMIT: usize = 1000;

/// The janitor's archive, as found on an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Archive {
    pub at: Option<OffsetDateTime>,
    pub reason: Option<String>,
    pub rule: Option<String>,
}

/// The breaker's quarantine, as found on an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Quarantine {
    pub host: Option<String>,
    pub at: Option<OffsetDateTime>,
    pub reason: Option<String>,
}

/// The breaker's move of an object into its lane, as found on it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaneMove {
    pub host: Option<String>,
    pub at: Option<OffsetDateTime>,
    /// The shard it carries now (`sharding.fluxcd.io/key`).
    pub shard: Option<String>,
}

/// Which parts an object opted out of.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OptOuts {
    pub janitor: bool,
    pub breaker: bool,
    pub mirror: bool,
    pub lane: bool,
}

/// fluxgate's marks on one GitRepository, parsed once. A time that does not parse counts as
/// absent: an edited or garbled annotation never stops a part from working.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Marks {
    /// The label `fluxgate.io/archived: "true"`, with the archive's annotations.
    pub archive: Option<Archive>,
    /// The label `fluxgate.io/quarantined: "true"`, with the quarantine's annotations.
    pub quarantine: Option<Quarantine>,
    /// The label `fluxgate.io/laned: "true"`, with the move's annotations.
    pub lane_move: Option<LaneMove>,
    pub released_at: Option<OffsetDateTime>,
    pub overridden_at: Option<OffsetDateTime>,
    pub restored_at: Option<OffsetDateTime>,
    pub original_url: Option<String>,
    pub opt_out: OptOuts,
}

impl Marks {
    /// Reads the marks through two look-ups, one per metadata map, so that every form of an
    /// object (JSON, a typed object, a watch's trimmed copy) is read by the same code.
    pub fn read<'a>(
        label: impl Fn(&str) -> Option<&'a str>,
        annotation: impl Fn(&str) -> Option<&'a str>,
    ) -> Self {
        let time = |key| annotation(key).and_then(|v| OffsetDateTime::parse(v, &Rfc3339).ok());
        let text = |key| annotation(key).map(str::to_owned);
        let opted_out = |key| annotation(key).is_some_and(opts_out);
        Self {
            archive: (label(archive::LABEL) == Some("true")).then(|| Archive {
                at: time(archive::AT_ANNOTATION),
                reason: text(archive::REASON_ANNOTATION),
                rule: text(archive::RULE_ANNOTATION),
            }),
            quarantine: (label(quarantine::LABEL) == Some("true")).then(|| Quarantine {
                host: text(quarantine::HOST_ANNOTATION),
                at: time(quarantine::AT_ANNOTATION),
                reason: text(quarantine::REASON_ANNOTATION),
            }),
            lane_move: (label(lane::MOVED_LABEL) == Some("true")).then(|| LaneMove {
                host: text(lane::HOST_ANNOTATION),
                at: time(lane::AT_ANNOTATION),
                shard: label(crate::flux::SHARD_LABEL).map(str::to_owned),
            }),
            released_at: time(stamps::RELEASED_AT_ANNOTATION),
            overridden_at: time(stamps::OVERRIDDEN_AT_ANNOTATION),
            restored_at: time(stamps::RESTORED_AT_ANNOTATION),
            original_url: text(mirror::ORIGINAL_URL_ANNOTATION),
            opt_out: OptOuts {
                janitor: opted_out(archive::OPT_OUT_ANNOTATION),
                breaker: opted_out(quarantine::OPT_OUT_ANNOTATION),
                mirror: opted_out(mirror::OPT_OUT_ANNOTATION),
                lane: opted_out(lane::OPT_OUT_ANNOTATION),
            },
        }
    }

    /// The marks of an object's `metadata` as JSON (fields of the wrong type count as absent).
    pub fn of_metadata(metadata: &Map<String, Value>) -> Self {
        let map = |key| metadata.get(key).and_then(Value::as_object);
        let (labels, annotations) = (map("labels"), map("annotations"));
        Self::read(
            |k| labels.and_then(|m| m.get(k)).and_then(Value::as_str),
            |k| annotations.and_then(|m| m.get(k)).and_then(Value::as_str),
        )
    }

    pub fn of_object(object: &kube::api::DynamicObject) -> Self {
        let meta = &object.metadata;
        Self::read(
            |k| meta.labels.as_ref()?.get(k).map(String::as_str),
            |k| meta.annotations.as_ref()?.get(k).map(String::as_str),
        )
    }

    /// When a person or a part last let the object run again: the janitor's clocks restart
    /// there, since a GitRepository released after its host's outage still carries the outage's
    /// failure dates.
    pub fn let_run_at(&self) -> Option<OffsetDateTime> {
        self.restored_at.max(self.released_at)
    }

    /// Whether an override (a person's restore, another writer's unsuspend) taken note of at
    /// `overridden_at` covers an episode of the breaker that began at `episode`.
    pub fn overrides_episode(&self, episode: OffsetDateTime) -> bool {
        self.overridden_at.is_some_and(|at| at >= episode)
    }
}

/// What `fluxgate restore` lifts from one object, read from its marks before the write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lifted {
    /// The archive's rule, when it was archived.
    pub archive: Option<String>,
    /// The quarantine's host, when it was quarantined.
    pub quarantine: Option<String>,
    /// The lane the breaker moved it into, when it did.
    pub lane: Option<String>,
}

impl Lifted {
    pub fn of(marks: &Marks) -> Self {
        Self {
            archive: marks
                .archive
                .as_ref()
                .map(|a| a.rule.clone().unwrap_or_else(|| "unknown".to_owned())),
            quarantine: marks
                .quarantine
                .as_ref()
                .map(|q| q.host.clone().unwrap_or_else(|| "its host".to_owned())),
            lane: marks
                .lane_move
                .as_ref()
                .map(|m| m.shard.clone().unwrap_or_else(|| "its lane".to_owned())),
        }
    }

    /// In words, for the Event and the command's output.
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(rule) = &self.archive {
            parts.push(format!("the janitor's archive (rule {rule})"));
        }
        if let Some(host) = &self.quarantine {
            parts.push(format!("the circuit breaker's quarantine for {host}"));
        }
        if let Some(shard) = &self.lane {
            parts.push(format!("the circuit breaker's move to lane {shard}"));
        }
        if parts.is_empty() {
            "no fluxgate marks".to_owned()
        } else {
            parts.join(" and ")
        }
    }
}

/// One change a part decided to make to one GitRepository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// The janitor suspends a GitRepository that keeps failing, with its archive marks.
    Archive { rule: String, reason: String },
    /// The janitor deletes one (opt-in); not a mark, but written and recorded alike.
    Delete { rule: String, reason: String },
    /// The breaker suspends a GitRepository of a host that does not answer.
    Quarantine { host: String, reason: String },
    /// The breaker lets a quarantined one run again (`canary`: to probe the host).
    Release { host: String, canary: bool },
    /// Someone else lifted a quarantine: the breaker takes note and leaves it alone.
    AcknowledgeOverride { host: String },
    /// The breaker moves a GitRepository of a host that does not answer into its lane
    /// (`serve --breaker-lane SHARD`): the lane's own source-controller keeps trying it, and
    /// nothing is suspended.
    MoveToLane {
        host: String,
        shard: String,
        reason: String,
    },
    /// The breaker moves one back to the main source-controller (`canary`: to probe the host).
    MoveBack { host: String, canary: bool },
    /// A person's `fluxgate restore`: lifts whatever fluxgate put on the object.
    Restore { lifted: Lifted },
}

/// A reason, action and note for the Event of one change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventText {
    pub warning: bool,
    pub reason: &'static str,
    pub action: &'static str,
    pub note: String,
}

impl Change {
    /// The `action` label of the metrics that count changes.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Archive { .. } => "suspend",
            Self::Delete { .. } => "delete",
            Self::Quarantine { .. } => "quarantine",
            Self::Release { .. } => "release",
            Self::AcknowledgeOverride { .. } => "acknowledge_override",
            // A lane move is the breaker's quarantine, a move back its release: the same
            // `action` label values, so dashboards and alerts read both modes alike.
            Self::MoveToLane { .. } => "quarantine",
            Self::MoveBack { .. } => "release",
            Self::Restore { .. } => "restore",
        }
    }

    /// Whether the write must be the one the decision judged (its resourceVersion): a decision
    /// about an object's state must not land on a newer state. Acknowledging an override only
    /// records what happened, and a person's restore wins over whatever happened meanwhile.
    pub fn judged_on_a_version(&self) -> bool {
        !matches!(
            self,
            Self::AcknowledgeOverride { .. } | Self::Restore { .. }
        )
    }

    /// The JSON merge patch that carries out the change (`None` for a delete).
    pub fn patch(&self, now: OffsetDateTime) -> Option<Value> {
        let stamp = rfc3339_seconds(now);
        let patch = match self {
            Self::Delete { .. } => return None,
            Self::Archive { rule, reason } => json!({
                "metadata": {
                    "labels": { archive::LABEL: "true" },
                    "annotations": {
                        archive::AT_ANNOTATION: stamp,
                        archive::REASON_ANNOTATION: reason,
                        archive::RULE_ANNOTATION: rule,
                    },
                },
                "spec": { "suspend": true },
            }),
            Self::Quarantine { host, reason } => json!({
                "metadata": {
                    "labels": { quarantine::LABEL: "true" },
                    "annotations": {
                        quarantine::HOST_ANNOTATION: host,
                        quarantine::AT_ANNOTATION: stamp,
                        quarantine::REASON_ANNOTATION: reason,
                    },
                },
                "spec": { "suspend": true },
            }),
            // One patch: a suspend lifted while the label stays would read as someone else's.
            Self::Release { .. } => {
                let mut patch = lift(&[Family::Quarantine], Some(&stamp));
                patch["metadata"]["annotations"][stamps::RELEASED_AT_ANNOTATION] = json!(stamp);
                patch
            }
            // Only fluxgate's own marks change: whoever lifted the suspend (or moved the object
            // out of the lane) keeps it so.
            Self::AcknowledgeOverride { .. } => {
                let mut patch = lift(&[Family::Quarantine, Family::LaneMarks], None);
                patch["metadata"]["annotations"][stamps::OVERRIDDEN_AT_ANNOTATION] = json!(stamp);
                patch
            }
            Self::MoveToLane {
                host,
                shard,
                reason,
            } => json!({
                "metadata": {
                    "labels": { crate::flux::SHARD_LABEL: shard, lane::MOVED_LABEL: "true" },
                    "annotations": {
                        lane::HOST_ANNOTATION: host,
                        lane::AT_ANNOTATION: stamp,
                        lane::REASON_ANNOTATION: reason,
                    },
                },
            }),
            Self::MoveBack { .. } => {
                let mut patch = lift(&[Family::Lane], Some(&stamp));
                patch["metadata"]["annotations"][stamps::RELEASED_AT_ANNOTATION] = json!(stamp);
                // Never suspended: only the labels change.
                if let Some(patch) = patch.as_object_mut() {
                    patch.remove("spec");
                }
                patch
            }
            // Both families, whatever was found: a half-written mark must not survive a restore.
            // The override stamp makes the breaker leave the object alone for the rest of its
            // host's episode, like any other writer's unsuspend. A lane is left only when the
            // breaker put the object there: a creator's own shard label stays.
            Self::Restore { lifted } => {
                let families: &[Family] = if lifted.lane.is_some() {
                    &[Family::Archive, Family::Quarantine, Family::Lane]
                } else {
                    &[Family::Archive, Family::Quarantine]
                };
                let mut patch = lift(families, Some(&stamp));
                let annotations = &mut patch["metadata"]["annotations"];
                annotations[stamps::RESTORED_AT_ANNOTATION] = json!(stamp);
                annotations[stamps::OVERRIDDEN_AT_ANNOTATION] = json!(stamp);
                patch
            }
        };
        Some(patch)
    }

    /// The Event recorded on the object once the change is made.
    pub fn event(&self) -> EventText {
        let (warning, reason, action, note) = match self {
            Self::Archive { rule, reason } => (
                true,
                "Archived",
                "Suspend",
                format!(
                    "fluxgate suspended this GitRepository: {reason} (rule {rule}); undo with \
                     `fluxgate restore NAMESPACE/NAME`"
                ),
            ),
            Self::Delete { rule, reason } => (
                true,
                "Deleted",
                "Delete",
                format!("fluxgate deleted this GitRepository: {reason} (rule {rule})"),
            ),
            Self::Quarantine { host, reason } => (
                true,
                "Quarantined",
                "Quarantine",
                format!(
                    "fluxgate's circuit breaker for {host} suspended this GitRepository: {reason}. \
                     It is released by itself once {host} answers again; `fluxgate restore \
                     NAMESPACE/NAME` lets it run now and keeps the breaker off it until then \
                     (`fluxgate restore --quarantined --host {host}` for all of them)"
                ),
            ),
            Self::Release { host, canary: true } => (
                false,
                "Probing",
                "Release",
                format!(
                    "fluxgate released this GitRepository to probe whether {host} answers again"
                ),
            ),
            Self::Release {
                host,
                canary: false,
            } => (
                false,
                "Released",
                "Release",
                format!(
                    "fluxgate's circuit breaker released this GitRepository: {host} answers again"
                ),
            ),
            Self::AcknowledgeOverride { host } => (
                true,
                "QuarantineOverridden",
                "Acknowledge",
                format!(
                    "this GitRepository was unsuspended while quarantined for {host}; fluxgate \
                     leaves it alone until {host} answers again (annotate fluxgate.io/breaker: \
                     \"false\" to opt out for good)"
                ),
            ),
            Self::MoveToLane {
                host,
                shard,
                reason,
            } => (
                true,
                "MovedToLane",
                "MoveToLane",
                format!(
                    "fluxgate's circuit breaker for {host} moved this GitRepository to host lane \
                     {shard}: {reason}. The lane's own source-controller keeps fetching it, so new \
                     revisions still arrive, and the other hosts' GitRepositories no longer wait \
                     behind it; it moves back once {host} answers again"
                ),
            ),
            Self::MoveBack { host, canary } => (
                false,
                "MovedBack",
                "MoveBack",
                if *canary {
                    format!(
                        "fluxgate moved this GitRepository back from its host lane to probe whether {host} answers again"
                    )
                } else {
                    format!(
                        "fluxgate's circuit breaker moved this GitRepository back from its host lane: {host} answers again"
                    )
                },
            ),
            Self::Restore { lifted } => (
                false,
                "Restored",
                "Restore",
                match &lifted.quarantine {
                    Some(host) => format!(
                        "fluxgate restore unsuspended this GitRepository and lifted {}; the \
                         circuit breaker leaves it alone until {host} answers again",
                        lifted.describe()
                    ),
                    None => format!(
                        "fluxgate restore unsuspended this GitRepository and lifted {}",
                        lifted.describe()
                    ),
                },
            ),
        };
        EventText {
            warning,
            reason,
            action,
            note: crate::text::fit(&note, EVENT_NOTE_LIMIT).into_owned(),
        }
    }
}

#[derive(Clone, Copy)]
enum Family {
    Archive,
    Quarantine,
    /// The lane move's marks and the shard label it set.
    Lane,
    /// The lane move's marks alone: whoever moved the object out of the lane decided its shard.
    LaneMarks,
}

/// A merge patch that removes the families' marks and, with `run_now` (the time to stamp),
/// unsuspends and asks Flux for a reconcile now.
fn lift(families: &[Family], run_now: Option<&str>) -> Value {
    let mut labels = Map::new();
    let mut annotations = Map::new();
    for family in families {
        let (label, keys): (&str, &[&str]) = match family {
            Family::Archive => (
                archive::LABEL,
                &[
                    archive::AT_ANNOTATION,
                    archive::REASON_ANNOTATION,
                    archive::RULE_ANNOTATION,
                ],
            ),
            Family::Quarantine => (
                quarantine::LABEL,
                &[
                    quarantine::HOST_ANNOTATION,
                    quarantine::AT_ANNOTATION,
                    quarantine::REASON_ANNOTATION,
                ],
            ),
            Family::Lane | Family::LaneMarks => (
                lane::MOVED_LABEL,
                &[
                    lane::HOST_ANNOTATION,
                    lane::AT_ANNOTATION,
                    lane::REASON_ANNOTATION,
                ],
            ),
        };
        labels.insert(label.to_owned(), Value::Null);
        if let Family::Lane = family {
            labels.insert(crate::flux::SHARD_LABEL.to_owned(), Value::Null);
        }
        for key in keys {
            annotations.insert((*key).to_owned(), Value::Null);
        }
    }
    let Some(stamp) = run_now else {
        return json!({ "metadata": { "labels": labels, "annotations": annotations } });
    };
    annotations.insert(REQUESTED_AT_ANNOTATION.to_owned(), json!(stamp));
    json!({
        "metadata": { "labels": labels, "annotations": annotations },
        "spec": { "suspend": false },
    })
}

/// How many GitRepositories in the cluster carry the breaker's quarantine label (a metadata-only
/// list by label, a page at a time).
pub async fn count_quarantined(client: &kube::Client) -> Result<usize, kube::Error> {
    let api = crate::flux::gitrepositories(client, None);
    let mut params = kube::api::ListParams::default()
        .labels(&format!("{}=true", quarantine::LABEL))
        .limit(500);
    let mut count = 0;
    loop {
        let page = api.list_metadata(&params).await?;
        count += page.items.len();
        match page.metadata.continue_ {
            Some(token) if !token.is_empty() => params = params.continue_token(&token),
            _ => return Ok(count),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
