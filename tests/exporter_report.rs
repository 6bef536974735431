//! The exporter and `fluxgate report` publish the same numbers for the same cluster: the shipped
//! incident snapshot goes through the watcher's path (objects as the API returns them, folded as
//! list events) and through the report, and every gauge series is compared with the report. The
//! breaker running over that watch's store judges each host as the report shows it.

use std::collections::BTreeMap;

use fluxgate::breaker::args::TripArgs;
use fluxgate::breaker::runtime::Breakers;
use fluxgate::breaker::{Action, BreakerState};
use fluxgate::exporter::{Exporter, ExporterConfig, Folder, Store};
use fluxgate::metrics::{BreakerMetrics, HostStateLabels, Metrics};
use kube::api::DynamicObject;
use kube::runtime::watcher::Event;
use serde_json::Value;
use time::OffsetDateTime;
use time::macros::datetime;

const NOW: OffsetDateTime = datetime!(2026-11-28 12:00 UTC);

fn snapshot() -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/gitrepositories-incident.json");
    let list: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    list["items"].as_array().unwrap().clone()
}

/// `name{labels} value` lines of the encoded registry, as (name, labels, value).
fn samples(registry: &Metrics) -> Vec<(String, BTreeMap<String, String>, f64)> {
    let text = registry.encode();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|line| {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => {
                    let labels = rest
                        .trim_end_matches('}')
                        .split("\",")
                        .map(|pair| {
                            let (k, v) = pair.split_once("=\"").unwrap();
                            (k.to_owned(), v.trim_end_matches('"').to_owned())
                        })
                        .collect();
                    (name.to_owned(), labels)
                }
                None => (series.to_owned(), BTreeMap::new()),
            };
            (name, labels, value.parse().unwrap())
        })
        .collect()
}

/// The exporter's store after its watch listed the snapshot, as `serve` holds it.
fn watched(objects: &[Value]) -> std::sync::Arc<Store> {
    let mut registry = Metrics::new();
    let exporter = Exporter::new(&mut registry, ExporterConfig::default());
    let mut folder = Folder::new(exporter.store(), 1);
    let now = NOW.unix_timestamp();
    folder.fold(0, Event::Init, now);
    for object in objects {
        let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        folder.fold(0, Event::InitApply(object), now);
    }
    assert!(folder.fold(0, Event::InitDone, now));
    exporter.store()
}

/// With and without `--breaker-exclude-hosts github.com`: the state the report shows for each
/// host is the one `serve`'s breaker publishes after its first pass over the watched store, a
/// host the report says would trip is one the breaker quarantines on, and the excluded host,
/// whose 96 transport failures trip it otherwise, is left alone by both.
#[test]
fn the_breaker_judges_each_host_as_the_report_shows_it_excluded_or_not() {
    let objects = snapshot();
    let store = watched(&objects);
    for excluded in [vec![], vec!["github.com".to_owned()]] {
        let trip = TripArgs {
            breaker_exclude_hosts: excluded.clone(),
            ..TripArgs::default()
        };
        let rules = fluxgate::report::Rulebook {
            breaker: trip.clone(),
            ..Default::default()
        };
        let report = fluxgate::report::build(&objects, NOW, &rules).unwrap();
        let metrics = BreakerMetrics::default();
        let plan = Breakers::new(trip, metrics.clone()).plan(&store, NOW);
        let quarantining = |host: &str| {
            plan.actions
                .iter()
                .any(|(h, a)| &**h == host && matches!(a, Action::Quarantine { .. }))
        };
        // The state whose series the breaker set to 1, for a host its pass looked at.
        let published = |host: &str| {
            BreakerState::ALL.into_iter().find(|state| {
                let labels = HostStateLabels {
                    host: host.to_owned(),
                    state: state.as_str(),
                };
                metrics.state.get_or_create(&labels).get() == 1
            })
        };
        let github = report
            .breaker_hosts
            .iter()
            .find(|h| h.host == "github.com")
            .unwrap();
        assert_eq!(github.excluded, !excluded.is_empty());
        assert_eq!(github.would_trip, excluded.is_empty(), "{github:?}");
        assert_eq!(quarantining("github.com"), excluded.is_empty());
        for host in &report.breaker_hosts {
            assert_eq!(quarantining(&host.host), host.would_trip, "{host:?}");
            if let Some(state) = published(&host.host) {
                assert_eq!(state.as_str(), host.state, "{host:?}");
            }
        }
        // Both hosts with enough failures to trip were looked at, the excluded one too.
        for host in ["github.com", "git.corp.example"] {
            assert!(published(host).is_some(), "{host}");
        }
    }
}

#[test]
fn exporter_gauges_equal_the_report_on_the_incident_snapshot() {
    let objects = snapshot();
    let report =
        fluxgate::report::build(&objects, NOW, &fluxgate::report::Rulebook::default()).unwrap();

    let mut registry = Metrics::new();
    let exporter = Exporter::new(&mut registry, ExporterConfig::default());
    let mut folder = Folder::new(exporter.store(), 1);
    let now = NOW.unix_timestamp();
    folder.fold(0, Event::Init, now);
    for object in &objects {
        let object: DynamicObject = serde_json::from_value(object.clone()).unwrap();
        folder.fold(0, Event::InitApply(object), now);
    }
    assert!(folder.fold(0, Event::InitDone, now));

    let samples = samples(&registry);
    let series = |name: &str| -> Vec<(BTreeMap<String, String>, f64)> {
        samples
            .iter()
            .filter(|(n, _, _)| n == name)
            .map(|(_, l, v)| (l.clone(), *v))
            .collect()
    };
    let value = |name: &str| series(name)[0].1;

    assert_eq!(value("fluxgate_watcher_objects"), report.total as f64);
    assert_eq!(value("fluxgate_watcher_synced"), 1.0);

    // fluxgate_gitrepositories{namespace, state}: every non-zero count, nothing else.
    let mut expected = Vec::new();
    for (namespace, counts) in &report.namespaces {
        for (state, n) in [
            ("ready", counts.ready),
            ("failed", counts.failed),
            ("pending", counts.pending),
            ("suspended", counts.suspended),
            ("progressing", counts.progressing),
        ] {
            if n > 0 {
                expected.push((namespace.clone(), state.to_owned(), n as f64));
            }
        }
    }
    let mut got: Vec<(String, String, f64)> = series("fluxgate_gitrepositories")
        .into_iter()
        .map(|(l, v)| (l["namespace"].clone(), l["state"].clone(), v))
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, expected);
    let total: f64 = got.iter().map(|g| g.2).sum();
    assert_eq!(total, 130.0);

    // fluxgate_gitrepositories_failed{namespace, host, reason}.
    let mut got: Vec<(String, String, String, f64)> = series("fluxgate_gitrepositories_failed")
        .into_iter()
        .map(|(l, v)| {
            (
                l["namespace"].clone(),
                l["host"].clone(),
                l["reason"].clone(),
                v,
            )
        })
        .collect();
    let mut expected: Vec<(String, String, String, f64)> = report
        .failed_by_namespace_host_reason
        .iter()
        .map(|g| {
            (
                g.namespace.clone().unwrap(),
                g.host.clone().unwrap(),
                g.reason.clone().unwrap(),
                g.count as f64,
            )
        })
        .collect();
    got.sort_by(|a, b| a.partial_cmp(b).unwrap());
    expected.sort_by(|a, b| a.partial_cmp(b).unwrap());
    assert_eq!(got, expected);

    // fluxgate_gitrepositories_unobserved{namespace}.
    let got: BTreeMap<String, f64> = series("fluxgate_gitrepositories_unobserved")
        .into_iter()
        .map(|(l, v)| (l["namespace"].clone(), v))
        .collect();
    let expected: BTreeMap<String, f64> = report
        .namespaces
        .iter()
        .filter(|(_, c)| c.unobserved > 0)
        .map(|(ns, c)| (ns.clone(), c.unobserved as f64))
        .collect();
    assert_eq!(got, expected);
    assert_eq!(got.values().sum::<f64>(), report.unobserved as f64);

    // fluxgate_gitrepositories_oldest_pending_timestamp_seconds{namespace}.
    let got: BTreeMap<String, f64> =
        series("fluxgate_gitrepositories_oldest_pending_timestamp_seconds")
            .into_iter()
            .map(|(l, v)| (l["namespace"].clone(), v))
            .collect();
    let expected: BTreeMap<String, f64> = report
        .namespaces
        .iter()
        .filter_map(|(ns, c)| {
            let t = c.oldest_pending.as_deref()?;
            let t =
                OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).unwrap();
            Some((ns.clone(), t.unix_timestamp() as f64))
        })
        .collect();
    assert_eq!(got.len(), 5);
    assert_eq!(got, expected);

    // fluxgate_gitrepository_failing_since_timestamp_seconds: one per failed object; the
    // longest failing agree with the report's list.
    let since = series("fluxgate_gitrepository_failing_since_timestamp_seconds");
    assert_eq!(since.len(), report.failed);
    for failing in &report.longest_failing {
        let (labels, value) = since
            .iter()
            .find(|(l, _)| l["namespace"] == failing.namespace && l["name"] == failing.name)
            .unwrap();
        assert_eq!(labels["host"], failing.host);
        assert_eq!(labels["reason"], failing.reason);
        assert_eq!(
            (NOW.unix_timestamp() as f64) - value,
            failing.failing_seconds.unwrap() as f64
        );
    }

    // Objects listed with conditions are not first reconciles.
    assert_eq!(
        value("fluxgate_gitrepository_first_reconcile_seconds_count"),
        0.0
    );
}

#[test]
fn the_snapshot_drains_to_nothing_when_every_object_is_deleted() {
    let objects = snapshot();
    let mut registry = Metrics::new();
    let exporter = Exporter::new(&mut registry, ExporterConfig::default());
    let mut folder = Folder::new(exporter.store(), 1);
    let now = NOW.unix_timestamp();
    let dynamic: Vec<DynamicObject> = objects
        .iter()
        .map(|o| serde_json::from_value(o.clone()).unwrap())
        .collect();
    folder.fold(0, Event::Init, now);
    for object in &dynamic {
        folder.fold(0, Event::InitApply(object.clone()), now);
    }
    folder.fold(0, Event::InitDone, now);
    for object in dynamic {
        folder.fold(0, Event::Delete(object), now + 1);
    }
    let left: Vec<String> = samples(&registry)
        .into_iter()
        .filter(|(name, labels, _)| {
            name.starts_with("fluxgate_gitrepositor")
                && !labels.is_empty()
                && !name.contains("first_reconcile_seconds_bucket")
        })
        .map(|(name, labels, _)| format!("{name}{labels:?}"))
        .collect();
    assert!(left.is_empty(), "stale series: {left:?}");
    assert_eq!(exporter.store().interned(), 0);
}
