//! The exporter's view of the cluster: one compact record per GitRepository, keyed by uid, and the
//! gauges' counts kept up to date as records come and go ([`super::exposition`] turns them into
//! text at scrape time). A change is visible on the next scrape after its watch event, and a
//! series whose count drops to zero (its namespace, host or objects gone) is removed from the
//! counts, so it vanishes from the scrape.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use prometheus_client::metrics::histogram::Histogram;

use crate::health::{FailureClass, Health, State};
use crate::uid::Uid;

/// Shares one allocation per distinct namespace and host: at 100k objects there are a few
/// hundred of each, not 100k.
#[derive(Debug, Default)]
struct Interner(HashSet<Arc<str>>);

impl Interner {
    fn get(&mut self, value: &str) -> Arc<str> {
        if let Some(existing) = self.0.get(value) {
            return existing.clone();
        }
        let shared: Arc<str> = Arc::from(value);
        self.0.insert(shared.clone());
        shared
    }

    /// Forgets `value` when the caller's copy is the last one outside the interner, so the
    /// strings of deleted namespaces and hosts do not pile up between re-lists.
    fn release(&mut self, value: Arc<str>) {
        if Arc::strong_count(&value) == 2 {
            self.0.remove(&value);
        }
    }

    /// Forgets every string no record uses any more.
    fn sweep(&mut self) {
        self.0.retain(|s| Arc::strong_count(s) > 1);
    }
}

/// What the metrics need of one GitRepository: a few words instead of the whole object (72
/// bytes on 64-bit targets, plus the name and the map's uid key; namespace and host strings are
/// shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub namespace: Arc<str>,
    /// Shared with scrape snapshots, which then copy a pointer instead of the name.
    pub name: Arc<str>,
    pub state: State,
    pub unobserved: bool,
    pub host: Arc<str>,
    pub class: Option<FailureClass>,
    /// Unix seconds; 0 when unknown (its series is then left out rather than claiming 1970).
    pub failing_since: i64,
    /// Seconds the failed attempt ran before its failure showed, when it ran out of its
    /// `spec.timeout` (saturating; 0 otherwise): see [`crate::health::Failure::attempt_timeout`].
    /// Kept with a failure the marks remember through a retry.
    pub attempt_seconds: u16,
    /// Unix seconds; 0 when unknown.
    pub created: i64,
    /// Which watch (namespace, or the whole cluster) it came from, so one scope can re-list
    /// without touching the others.
    pub scope: u16,
    /// Its host lane (`sharding.fluxcd.io/key`): 0 for none, else a number the store's lane
    /// table names (one byte, which the record had spare).
    pub lane: u8,
    /// `metadata.resourceVersion` when it is a decimal number (as etcd's are), else 0: the
    /// breaker's writes are conditional on it.
    pub resource_version: u64,
    /// The breaker's marks, for the few objects that carry any.
    pub marks: Option<Box<RecordMarks>>,
}

/// The breaker's part of one GitRepository's [`crate::marks::Marks`], kept compact (times in
/// Unix seconds, 0 when absent) for the few objects that carry any.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecordMarks {
    /// Held by the breaker: the label `fluxgate.io/quarantined=true`, or `fluxgate.io/laned=true`
    /// (moved into its lane instead of suspended).
    pub quarantined: bool,
    /// Held in the breaker's lane rather than suspended.
    pub laned: bool,
    /// Carries the breaker's lane mark but no shard label any more: someone moved it back.
    pub lane_left: bool,
    /// `fluxgate.io/breaker: "false"`.
    pub opted_out: bool,
    pub quarantined_at: i64,
    pub released_at: i64,
    pub overridden_at: i64,
    /// When its Ready condition last changed: tells a released object's fresh verdict from the
    /// one it had before its quarantine.
    pub ready_changed_at: i64,
    /// When it last failed with a transport error, kept while source-controller tries it again
    /// (`Ready=Unknown` during the attempt): a released canary's failure lasts only until its
    /// retry, 750ms later, and a pass could miss it.
    pub transport_failed_at: i64,
}

impl RecordMarks {
    fn of(health: &Health) -> Option<Box<Self>> {
        let time =
            |at: Option<time::OffsetDateTime>| at.map_or(0, time::OffsetDateTime::unix_timestamp);
        let found = &health.marks;
        let marks = Self {
            quarantined: found.quarantine.is_some() || found.lane_move.is_some(),
            laned: found.lane_move.is_some(),
            lane_left: found
                .lane_move
                .as_ref()
                .is_some_and(|m| m.shard.as_deref().is_none_or(str::is_empty)),
            opted_out: found.opt_out.breaker,
            quarantined_at: time(
                found
                    .quarantine
                    .as_ref()
                    .and_then(|q| q.at)
                    .or_else(|| found.lane_move.as_ref().and_then(|m| m.at)),
            ),
            released_at: time(found.released_at),
            overridden_at: time(found.overridden_at),
            ready_changed_at: health
                .ready_changed_at
                .map_or(0, time::OffsetDateTime::unix_timestamp),
            transport_failed_at: 0,
        };
        let marked = marks.quarantined
            || marks.opted_out
            || marks.quarantined_at > 0
            || marks.released_at > 0
            || marks.overridden_at > 0;
        marked.then(|| Box::new(marks))
    }

    /// Sets [`Self::transport_failed_at`] from the object's new state and what the previous
    /// version of it remembered.
    fn remember_failure(&mut self, state: State, class: Option<FailureClass>, previous: i64) {
        self.transport_failed_at = match state {
            State::Failed if class.is_some_and(FailureClass::is_transport) => {
                if self.ready_changed_at > 0 {
                    self.ready_changed_at
                } else {
                    previous
                }
            }
            State::Pending | State::Progressing => previous,
            State::Ready | State::Failed | State::Suspended | State::Quarantined => 0,
        };
    }
}

/// The records and the watcher's health, shared between the watch loop and the collector.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    first_reconcile: Histogram,
    synced: AtomicBool,
    ever_synced: AtomicBool,
    /// Unix seconds of the first error of the current error streak; 0 when healthy.
    error_since: AtomicI64,
    last_event: AtomicI64,
    restarts: AtomicI64,
    /// Woken on every change, for the breaker to react within moments, not at its next pass.
    changed: tokio::sync::Notify,
}

#[derive(Debug, Default)]
struct Inner {
    /// Changed one record at a time through `insert` and `remove`, which keep `counts` in step,
    /// or wholesale (a re-list) followed by `recount`.
    records: HashMap<Uid, Record>,
    counts: Counts,
    /// Records of re-lists in progress, per scope; swapped in whole when a list completes, so
    /// objects deleted while the watch was down disappear.
    relisting: HashMap<u16, HashMap<Uid, Record>>,
    interner: Interner,
    /// One URL per host with records (without userinfo), for fluxgate's own probe of the host.
    probe_urls: HashMap<Arc<str>, Box<str>>,
}

impl Inner {
    fn insert(&mut self, uid: Uid, record: Record) -> Option<Record> {
        self.counts.change(&record, 1);
        let previous = self.records.insert(uid, record);
        if let Some(previous) = &previous {
            self.counts.change(previous, -1);
            self.forget_url_of_a_gone_host(&previous.host);
        }
        previous
    }

    fn remove(&mut self, uid: &str) -> Option<Record> {
        let record = self.records.remove(&Uid::new(uid))?;
        self.counts.change(&record, -1);
        self.forget_url_of_a_gone_host(&record.host);
        Some(record)
    }

    /// A host with no records left is forgotten, its probe URL with it.
    fn forget_url_of_a_gone_host(&mut self, host: &Arc<str>) {
        if !self.counts.hosts.contains_key(host) {
            self.probe_urls.remove(host);
        }
    }

    /// After the records were replaced wholesale (a re-list).
    fn recount(&mut self) {
        // The lane numbers records carry stay valid.
        let mut counts = Counts {
            lanes: std::mem::take(&mut self.counts.lanes),
            ..Counts::default()
        };
        for record in self.records.values() {
            counts.change(record, 1);
        }
        self.probe_urls
            .retain(|host, _| counts.hosts.contains_key(host));
        self.counts = counts;
    }
}

/// What the gauges report, kept up to date on every change. A scrape then copies a few thousand
/// counts instead of going over every record (at 100k objects that was most of a scrape's
/// CPU), and a watch event pays a few ordered-map updates, small next to decoding its object.
/// Keyed by text, so equal strings behind different pointers are one series.
#[derive(Debug, Default)]
struct Counts {
    by_state: BTreeMap<(Arc<str>, State), i64>,
    failed: BTreeMap<(Arc<str>, Arc<str>, FailureClass), i64>,
    unobserved: BTreeMap<Arc<str>, i64>,
    /// Quarantined records (suspended by the breaker) by namespace and host.
    quarantined: BTreeMap<(Arc<str>, Arc<str>), i64>,
    /// Records in a host lane, by lane and state.
    by_lane: BTreeMap<(Arc<str>, State), i64>,
    /// The lanes seen, numbered from 1 in the order they came ([`Record::lane`]); at most
    /// [`MAX_LANES`], the rest counted under the last one, `other`.
    lanes: Vec<Arc<str>>,
    /// Per host: its records, those failing with a transport error, and those carrying the
    /// quarantine label. The breaker looks closer only at hosts where these say it might act.
    hosts: BTreeMap<Arc<str>, HostTally>,
    /// Pending records outside host lanes by namespace and creation time, with how many share
    /// each: the oldest of a namespace (its first entry) must be known again when any one of them
    /// goes. One map for all namespaces, not a small map per namespace: thousands of those cost
    /// megabytes. Those of a lane wait for the lane's own source-controller: `lane_pending_created`.
    pending_created: BTreeMap<(Arc<str>, i64), i64>,
    /// Pending records in a host lane, by lane and creation time.
    lane_pending_created: BTreeMap<(Arc<str>, i64), i64>,
}

/// What the breaker needs to know of a host without looking at its records.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct HostTally {
    /// All of the host's records: what a pass that looks at the host holds, to allocate once.
    pub records: i64,
    pub transport_failing: i64,
    pub quarantine_marked: i64,
    /// Ready records: the host answered source-controller lately.
    pub ready: i64,
}

/// Lanes a store tells apart; a cluster has a few.
pub const MAX_LANES: usize = 255;

impl Counts {
    /// The number of `lane` in [`Record::lane`], naming it on first sight.
    fn lane_number(&mut self, lane: Option<&str>) -> u8 {
        let Some(lane) = lane.filter(|l| !l.is_empty()) else {
            return 0;
        };
        let found = self.lanes.iter().position(|l| &**l == lane);
        let index = found.unwrap_or_else(|| {
            if self.lanes.len() + 1 < MAX_LANES {
                self.lanes.push(Arc::from(lane));
            } else if self.lanes.len() + 1 == MAX_LANES {
                self.lanes.push(Arc::from("other"));
            }
            self.lanes.len() - 1
        });
        u8::try_from(index + 1).unwrap_or(u8::MAX)
    }

    /// Adds (`delta` 1) or takes away (-1) one record's part in every count.
    fn change(&mut self, r: &Record, delta: i64) {
        let lane = usize::from(r.lane)
            .checked_sub(1)
            .and_then(|i| self.lanes.get(i))
            .cloned();
        if let Some(lane) = &lane {
            bump(&mut self.by_lane, (lane.clone(), r.state), delta);
        }
        let transport_failing =
            r.state == State::Failed && r.class.is_some_and(FailureClass::is_transport);
        let quarantine_marked = r.marks.as_ref().is_some_and(|m| m.quarantined);
        let tally = self.hosts.entry(r.host.clone()).or_default();
        tally.records += delta;
        tally.transport_failing += delta * i64::from(transport_failing);
        tally.quarantine_marked += delta * i64::from(quarantine_marked);
        tally.ready += delta * i64::from(r.state == State::Ready);
        if tally.records <= 0 {
            self.hosts.remove(&r.host);
        }
        if r.state == State::Quarantined {
            bump(
                &mut self.quarantined,
                (r.namespace.clone(), r.host.clone()),
                delta,
            );
        }
        bump(&mut self.by_state, (r.namespace.clone(), r.state), delta);
        if r.unobserved {
            bump(&mut self.unobserved, r.namespace.clone(), delta);
        }
        match r.state {
            State::Failed => {
                let class = r.class.unwrap_or(FailureClass::Other);
                bump(
                    &mut self.failed,
                    (r.namespace.clone(), r.host.clone(), class),
                    delta,
                );
            }
            State::Pending if r.created > 0 => match lane {
                Some(lane) => bump(&mut self.lane_pending_created, (lane, r.created), delta),
                None => bump(
                    &mut self.pending_created,
                    (r.namespace.clone(), r.created),
                    delta,
                ),
            },
            _ => {}
        }
    }
}

/// Adds `delta` to a count, dropping the entry at zero so that its series (and its hold on the
/// interned strings in its key) goes with the last record it counted.
fn bump<K: Ord>(counts: &mut BTreeMap<K, i64>, key: K, delta: i64) {
    match counts.entry(key) {
        Entry::Occupied(mut entry) => {
            *entry.get_mut() += delta;
            if *entry.get() <= 0 {
                entry.remove();
            }
        }
        Entry::Vacant(entry) => {
            if delta > 0 {
                entry.insert(delta);
            }
        }
    }
}

/// Buckets for the wait between creation and the first status condition.
pub const FIRST_RECONCILE_BUCKETS: [f64; 10] = [
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

impl Default for Store {
    fn default() -> Self {
        Self {
            inner: Mutex::default(),
            first_reconcile: Histogram::new(FIRST_RECONCILE_BUCKETS),
            synced: AtomicBool::new(false),
            ever_synced: AtomicBool::new(false),
            error_since: AtomicI64::new(0),
            last_event: AtomicI64::new(0),
            restarts: AtomicI64::new(0),
            changed: tokio::sync::Notify::new(),
        }
    }
}

impl Store {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a record half-written (records are
        // replaced whole), so keep serving what is there.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn first_reconcile(&self) -> Histogram {
        self.first_reconcile.clone()
    }

    fn record(inner: &mut Inner, scope: u16, health: &Health) -> Record {
        let host = inner.interner.get(&health.host);
        if !health.probe_url.is_empty() && !inner.probe_urls.contains_key(&host) {
            inner
                .probe_urls
                .insert(host.clone(), health.probe_url.as_str().into());
        }
        Record {
            scope,
            lane: inner.counts.lane_number(health.lane.as_deref()),
            namespace: inner.interner.get(&health.namespace),
            name: health.name.as_str().into(),
            state: health.state,
            unobserved: health.unobserved,
            host,
            class: health.failure.as_ref().map(|f| f.class),
            failing_since: health
                .failure
                .as_ref()
                .and_then(|f| f.since)
                .map_or(0, time::OffsetDateTime::unix_timestamp),
            attempt_seconds: health
                .failure
                .as_ref()
                .and_then(|f| f.attempt_timeout)
                .map_or(0, |t| u16::try_from(t.as_secs()).unwrap_or(u16::MAX)),
            created: health
                .created
                .map_or(0, time::OffsetDateTime::unix_timestamp),
            resource_version: health.resource_version.parse().unwrap_or(0),
            marks: RecordMarks::of(health),
        }
    }

    /// A (re-)list of `scope` begins: its records arrive with [`Store::relist_apply`] until
    /// [`Store::relist_done`].
    pub fn relist_start(&self, scope: u16) {
        self.synced.store(false, Ordering::Relaxed);
        self.lock().relisting.insert(scope, HashMap::new());
    }

    pub fn relist_apply(&self, scope: u16, health: &Health) {
        let mut inner = self.lock();
        let record = Self::record(&mut inner, scope, health);
        inner
            .relisting
            .entry(scope)
            .or_default()
            .insert(Uid::new(&health.uid), record);
    }

    /// The list of `scope` is complete: its records replace the scope's old ones. `all_synced`
    /// says whether every scope has now listed since the last error.
    pub fn relist_done(&self, scope: u16, all_synced: bool, now: i64) {
        {
            let mut inner = self.lock();
            let fresh = inner.relisting.remove(&scope).unwrap_or_default();
            inner.records.retain(|_, r| r.scope != scope);
            if inner.records.is_empty() {
                // One scope (the cluster-wide watch) or the first to list: take the fresh map
                // as it is instead of copying 100k records into a second one.
                inner.records = fresh;
            } else {
                inner.records.extend(fresh);
            }
            inner.recount();
            inner.interner.sweep();
        }
        if all_synced {
            self.synced.store(true, Ordering::Relaxed);
            self.ever_synced.store(true, Ordering::Relaxed);
            self.error_since.store(0, Ordering::Relaxed);
        }
        self.last_event.store(now, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// An object was added or changed after the initial list.
    ///
    /// The first-reconcile histogram gets one observation (first condition's time minus creation
    /// time) when a repository this watch already holds as `pending` (no conditions) arrives with
    /// a condition. Objects that had conditions when they were (re-)listed are never observed:
    /// their wait happened before fluxgate looked and would skew the histogram after every
    /// restart. Suspended ones are not `pending`, so time spent suspended is not counted either,
    /// and a host lane's are left out: they wait for the lane's own source-controller.
    pub fn apply(&self, scope: u16, health: &Health, now: i64) {
        let mut inner = self.lock();
        let mut record = Self::record(&mut inner, scope, health);
        let uid = Uid::new(&health.uid);
        let (state, class) = (record.state, record.class);
        if let Some(marks) = record.marks.as_deref_mut() {
            let previous = inner.records.get(&uid);
            let (failed_at, attempt_seconds) = previous
                .and_then(|r| Some((r.marks.as_deref()?.transport_failed_at, r.attempt_seconds)))
                .unwrap_or_default();
            marks.remember_failure(state, class, failed_at);
            // A remembered failure keeps how long its attempt ran, so it is dated alike.
            if marks.transport_failed_at > 0 && state != State::Failed {
                record.attempt_seconds = attempt_seconds;
            }
        }
        let previous = inner.insert(uid, record);
        if let Some(previous) = previous {
            if previous.state == State::Pending
                && previous.lane == 0
                && let (Some(created), Some(first)) = (health.created, health.first_condition_at)
            {
                // Clocks of the API server and the controller may disagree by a little.
                self.first_reconcile
                    .observe((first - created).as_seconds_f64().max(0.0));
            }
            inner.interner.release(previous.namespace);
            inner.interner.release(previous.host);
        }
        drop(inner);
        self.last_event.store(now, Ordering::Relaxed);
        self.changed.notify_one();
    }

    pub fn delete(&self, uid: &str, now: i64) {
        let mut inner = self.lock();
        if let Some(record) = inner.remove(uid) {
            inner.interner.release(record.namespace);
            inner.interner.release(record.host);
        }
        drop(inner);
        self.last_event.store(now, Ordering::Relaxed);
        self.changed.notify_one();
    }

    /// Distinct namespace and host strings held; for tests of memory use.
    pub fn interned(&self) -> usize {
        self.lock().interner.0.len()
    }

    /// The watch failed; it will be re-established with a fresh list.
    pub fn watch_error(&self, now: i64) {
        self.synced.store(false, Ordering::Relaxed);
        self.restarts.fetch_add(1, Ordering::Relaxed);
        let _ = self
            .error_since
            .compare_exchange(0, now, Ordering::Relaxed, Ordering::Relaxed);
    }

    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Relaxed)
    }

    /// Ready once the first list is in, and not in an error streak longer than `grace` seconds:
    /// a blip of the API server does not flap readiness, a watch that stays broken does.
    pub fn is_ready(&self, now: i64, grace: i64) -> bool {
        if !self.ever_synced.load(Ordering::Relaxed) {
            return false;
        }
        let since = self.error_since.load(Ordering::Relaxed);
        self.is_synced() || since == 0 || now - since < grace
    }

    pub fn len(&self) -> usize {
        self.lock().records.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A copy of the records, for tests and offline comparison.
    pub fn records(&self) -> Vec<Record> {
        self.lock().records.values().cloned().collect()
    }
}

/// The counts, copied under the lock, encoded after releasing it.
#[derive(Debug, Default, PartialEq)]
pub struct Aggregate {
    pub by_state: BTreeMap<(Arc<str>, State), i64>,
    pub failed: BTreeMap<(Arc<str>, Arc<str>, FailureClass), i64>,
    pub unobserved: BTreeMap<Arc<str>, i64>,
    /// Outside host lanes, by namespace.
    pub oldest_pending: BTreeMap<Arc<str>, i64>,
    pub quarantined: BTreeMap<(Arc<str>, Arc<str>), i64>,
    pub by_lane: BTreeMap<(Arc<str>, State), i64>,
    /// In host lanes, by lane.
    pub lane_oldest_pending: BTreeMap<Arc<str>, i64>,
    pub objects: i64,
}

/// The first (oldest) creation time of each key (namespace or lane), from entries sorted by key,
/// then time.
fn oldest_per_key(pending: &BTreeMap<(Arc<str>, i64), i64>) -> BTreeMap<Arc<str>, i64> {
    let mut oldest: Vec<(Arc<str>, i64)> = Vec::new();
    for (key, created) in pending.keys() {
        if oldest.last().is_none_or(|(last, _)| last != key) {
            oldest.push((key.clone(), *created));
        }
    }
    oldest.into_iter().collect()
}

/// Identity of an interned string, to tell namespaces apart without comparing their text.
fn identity(s: &Arc<str>) -> usize {
    Arc::as_ptr(s).cast::<u8>() as usize
}

impl Store {
    pub fn aggregate(&self) -> Aggregate {
        let inner = self.lock();
        let counts = &inner.counts;
        Aggregate {
            by_state: counts.by_state.clone(),
            failed: counts.failed.clone(),
            unobserved: counts.unobserved.clone(),
            oldest_pending: oldest_per_key(&counts.pending_created),
            quarantined: counts.quarantined.clone(),
            by_lane: counts.by_lane.clone(),
            lane_oldest_pending: oldest_per_key(&counts.lane_pending_created),
            objects: i64::try_from(inner.records.len()).unwrap_or(i64::MAX),
        }
    }

    /// A URL of one of `host`'s GitRepositories, for fluxgate's own probe of the host.
    pub fn probe_url(&self, host: &str) -> Option<Box<str>> {
        self.lock().probe_urls.get(host).cloned()
    }

    /// Each host's tally, for the breaker to pick the hosts worth a closer look.
    pub fn host_tallies(&self) -> BTreeMap<Arc<str>, HostTally> {
        self.lock().counts.hosts.clone()
    }

    /// Calls `visit` with the uid and record of every record whose host is in `hosts`, under
    /// the store's lock: keep `visit` short.
    pub fn visit_hosts(&self, hosts: &BTreeSet<Arc<str>>, mut visit: impl FnMut(&Uid, &Record)) {
        if hosts.is_empty() {
            return;
        }
        let inner = self.lock();
        for (uid, record) in &inner.records {
            if hosts.contains(&record.host) {
                visit(uid, record);
            }
        }
    }

    /// Waits until a record changes (or was changed since the last wait).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    /// The failed records with a known start, sorted by namespace and name, copied in one lock.
    /// Strings are shared, so a copy is a few words per record.
    pub fn failing_since(&self) -> Vec<FailingSeries> {
        let mut series: Vec<FailingSeries> = {
            let inner = self.lock();
            // Sized by the count of failed records, which these are a part of: grown by
            // doubling, the copy of 80 000 took 8 MiB for 5.
            let failed: i64 = inner.counts.failed.values().sum();
            let mut series = Vec::with_capacity(usize::try_from(failed).unwrap_or(0));
            series.extend(
                inner
                    .records
                    .values()
                    .filter(|r| r.state == State::Failed && r.failing_since > 0)
                    .map(|r| FailingSeries {
                        namespace: r.namespace.clone(),
                        name: r.name.clone(),
                        host: r.host.clone(),
                        class: r.class.unwrap_or(FailureClass::Other),
                        since: r.failing_since,
                        namespace_rank: 0,
                    }),
            );
            series
        };
        // Namespaces are far fewer than objects: sorting them once and then comparing their
        // ranks avoids a string comparison of namespaces in most of the n log n comparisons.
        let mut namespaces: Vec<&Arc<str>> = {
            let mut seen = HashSet::new();
            series
                .iter()
                .filter(|s| seen.insert(identity(&s.namespace)))
                .map(|s| &s.namespace)
                .collect()
        };
        namespaces.sort_unstable();
        let mut ranks: HashMap<usize, u32> = HashMap::with_capacity(namespaces.len());
        let mut rank = 0u32;
        for (i, ns) in namespaces.iter().enumerate() {
            // Equal text behind another pointer shares the rank.
            if i > 0 && namespaces[i - 1] != *ns {
                rank += 1;
            }
            ranks.insert(identity(ns), rank);
        }
        for s in &mut series {
            s.namespace_rank = ranks[&identity(&s.namespace)];
        }
        series.sort_unstable_by(|a, b| {
            a.namespace_rank
                .cmp(&b.namespace_rank)
                .then_with(|| a.name.cmp(&b.name))
        });
        series
    }
}

/// One failed GitRepository's `failing_since` series.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailingSeries {
    pub namespace: Arc<str>,
    pub name: Arc<str>,
    pub host: Arc<str>,
    pub class: FailureClass,
    /// Unix seconds.
    pub since: i64,
    /// Position of the namespace among the snapshot's, for sorting.
    namespace_rank: u32,
}

impl Store {
    /// When the watcher last received an event or completed a list (Unix seconds).
    pub fn last_event(&self) -> i64 {
        self.last_event.load(Ordering::Relaxed)
    }

    /// Times the watch failed and was re-established with a fresh list.
    pub fn restarts(&self) -> i64 {
        self.restarts.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::super::exposition::*;
    use super::*;
    use crate::health::classify;
    use crate::metrics::Metrics;
    use crate::metrics::{CHUNK_BYTES, ChunkedFamily};
    use prometheus_client::collector::Collector;
    use prometheus_client::encoding::DescriptorEncoder;
    use serde_json::{Value, json};

    const NOW: i64 = 1_795_000_000;

    fn repo(ns: &str, name: &str, uid: &str, status: Option<Value>) -> Health {
        let mut object = json!({
            "metadata": { "name": name, "namespace": ns, "uid": uid, "generation": 1,
                          "creationTimestamp": "2026-11-28T10:00:00Z" },
            "spec": { "url": "https://github.com/o/r", "interval": "1m" },
        });
        if let Some(status) = status {
            object["status"] = status;
        }
        classify(&object).unwrap()
    }

    fn failing(message: &str) -> Option<Value> {
        Some(json!({ "observedGeneration": -1, "conditions": [{
            "type": "Ready", "status": "False", "reason": "GitOperationFailed", "message": message,
            "lastTransitionTime": "2026-11-28T10:01:00Z" }] }))
    }

    fn ready() -> Option<Value> {
        Some(json!({ "observedGeneration": 1, "conditions": [{
            "type": "Ready", "status": "True", "reason": "Succeeded", "message": "",
            "lastTransitionTime": "2026-11-28T10:00:30Z" }] }))
    }

    fn metrics(store: &Arc<Store>) -> Metrics {
        let mut metrics = Metrics::new();
        let registry = metrics.registry_mut();
        registry.register(
            "gitrepository_first_reconcile_seconds",
            "wait",
            store.first_reconcile(),
        );
        metrics.register_chunked(Arc::new(StoreFamilies(store.clone())));
        metrics.register_chunked(Arc::new(FailingSinceFamily(store.clone())));
        metrics
    }

    fn encode(store: &Arc<Store>) -> String {
        metrics(store).encode()
    }

    /// The exporter's samples, without the histogram.
    fn samples(text: &str) -> Vec<&str> {
        text.lines()
            .filter(|l| {
                (l.starts_with("fluxgate_gitrepositor") || l.starts_with("fluxgate_watcher_"))
                    && !l.starts_with("fluxgate_gitrepository_first_reconcile")
            })
            .collect()
    }

    #[test]
    fn encodes_every_family_exactly() {
        let store = Arc::new(Store::default());
        store.relist_start(0);
        store.relist_apply(
            0,
            &repo("proj-1", "a", "u1", failing("context deadline exceeded")),
        );
        store.relist_apply(
            0,
            &repo(
                "proj-1",
                "b",
                "u2",
                failing("x509: certificate has expired"),
            ),
        );
        store.relist_apply(0, &repo("proj-2", "c", "u3", ready()));
        store.relist_apply(0, &repo("proj-2", "d", "u4", None));
        store.relist_done(0, true, NOW);
        let text = encode(&store);
        assert_eq!(
            samples(&text),
            [
                r#"fluxgate_gitrepositories{namespace="proj-1",state="failed"} 2"#,
                r#"fluxgate_gitrepositories{namespace="proj-2",state="ready"} 1"#,
                r#"fluxgate_gitrepositories{namespace="proj-2",state="pending"} 1"#,
                r#"fluxgate_gitrepositories_failed{namespace="proj-1",host="github.com",reason="timeout"} 1"#,
                r#"fluxgate_gitrepositories_failed{namespace="proj-1",host="github.com",reason="tls"} 1"#,
                r#"fluxgate_gitrepositories_unobserved{namespace="proj-1"} 2"#,
                r#"fluxgate_gitrepositories_unobserved{namespace="proj-2"} 1"#,
                r#"fluxgate_gitrepositories_oldest_pending_timestamp_seconds{namespace="proj-2"} 1795860000"#,
                "fluxgate_watcher_objects 4",
                "fluxgate_watcher_synced 1",
                "fluxgate_watcher_last_event_timestamp_seconds 1795000000",
                "fluxgate_watcher_restarts_total 0",
                r#"fluxgate_gitrepository_failing_since_timestamp_seconds{namespace="proj-1",name="a",host="github.com",reason="timeout"} 1795860060"#,
                r#"fluxgate_gitrepository_failing_since_timestamp_seconds{namespace="proj-1",name="b",host="github.com",reason="tls"} 1795860060"#,
            ]
        );
        assert!(
            text.contains("# TYPE fluxgate_watcher_restarts counter"),
            "{text}"
        );
    }

    #[test]
    fn changes_and_deletes_show_at_once_and_stale_series_vanish() {
        let store = Arc::new(Store::default());
        store.relist_start(0);
        store.relist_apply(0, &repo("proj-1", "a", "u1", failing("i/o timeout")));
        store.relist_done(0, true, NOW);
        store.apply(0, &repo("proj-1", "a", "u1", ready()), NOW + 1);
        let text = encode(&store);
        assert!(!text.contains("gitrepositories_failed{"), "{text}");
        assert!(!text.contains("failing_since_timestamp_seconds{"), "{text}");
        assert!(text.contains(r#"fluxgate_gitrepositories{namespace="proj-1",state="ready"} 1"#));
        store.delete("u1", NOW + 2);
        let text = encode(&store);
        assert!(!text.contains("proj-1"), "{text}");
        assert!(text.contains("fluxgate_watcher_objects 0"));
    }

    #[test]
    fn a_relist_replaces_its_scope_only_and_forgets_deleted_objects() {
        let store = Arc::new(Store::default());
        for (scope, ns) in [(0, "proj-1"), (1, "proj-2")] {
            store.relist_start(scope);
            store.relist_apply(scope, &repo(ns, "a", &format!("{ns}-a"), ready()));
            store.relist_apply(scope, &repo(ns, "b", &format!("{ns}-b"), ready()));
            store.relist_done(scope, scope == 1, NOW);
        }
        assert_eq!(store.len(), 4);
        // proj-1's watch breaks; meanwhile b was deleted.
        store.watch_error(NOW + 5);
        assert!(!store.is_synced());
        store.relist_start(0);
        store.relist_apply(0, &repo("proj-1", "a", "proj-1-a", ready()));
        store.relist_done(0, true, NOW + 6);
        let mut names: Vec<String> = store
            .records()
            .iter()
            .map(|r| format!("{}/{}", r.namespace, r.name))
            .collect();
        names.sort();
        assert_eq!(names, ["proj-1/a", "proj-2/a", "proj-2/b"]);
        assert!(store.is_synced());
        assert!(encode(&store).contains("fluxgate_watcher_restarts_total 1"));
    }

    #[test]
    fn readiness_waits_for_the_first_list_and_tolerates_short_errors() {
        let store = Store::default();
        assert!(!store.is_ready(NOW, 60));
        store.relist_start(0);
        assert!(!store.is_ready(NOW, 60));
        store.relist_done(0, true, NOW);
        assert!(store.is_ready(NOW, 60));
        store.watch_error(NOW);
        assert!(
            store.is_ready(NOW + 59, 60),
            "a blip does not flap readiness"
        );
        assert!(
            !store.is_ready(NOW + 61, 60),
            "a watch broken for a minute is not ready"
        );
        store.watch_error(NOW + 30);
        assert!(
            !store.is_ready(NOW + 61, 60),
            "the streak counts from its first error"
        );
        store.relist_start(0);
        store.relist_done(0, true, NOW + 70);
        assert!(store.is_ready(NOW + 70, 60));
    }

    #[test]
    fn first_reconcile_wait_is_observed_once_for_repositories_seen_waiting() {
        let store = Arc::new(Store::default());
        store.relist_start(0);
        // Already reconciled at startup: not observed.
        store.relist_apply(0, &repo("p", "old", "u0", ready()));
        store.relist_apply(0, &repo("p", "new", "u1", None));
        store.relist_done(0, true, NOW);
        store.apply(0, &repo("p", "new", "u1", failing("timeout")), NOW);
        // A later change of the same object is not a first reconcile.
        store.apply(0, &repo("p", "new", "u1", ready()), NOW);
        let text = encode(&store);
        assert!(
            text.contains("fluxgate_gitrepository_first_reconcile_seconds_count 1"),
            "{text}"
        );
        assert!(
            text.contains("fluxgate_gitrepository_first_reconcile_seconds_sum 60.0"),
            "{text}"
        );
        assert!(
            text.contains(r#"fluxgate_gitrepository_first_reconcile_seconds_bucket{le="60.0"} 1"#),
            "{text}"
        );
        assert!(
            text.contains(r#"fluxgate_gitrepository_first_reconcile_seconds_bucket{le="30.0"} 0"#),
            "{text}"
        );
    }

    #[test]
    fn an_unknown_failing_since_counts_as_failed_without_a_since_series() {
        let store = Arc::new(Store::default());
        store.relist_start(0);
        let mut status = failing("i/o timeout").unwrap();
        status["conditions"][0]["lastTransitionTime"] = json!("not a time");
        store.relist_apply(0, &repo("proj-1", "a", "u1", Some(status)));
        store.relist_done(0, true, NOW);
        let text = encode(&store);
        assert!(
            text.contains(r#"fluxgate_gitrepositories_failed{namespace="proj-1",host="github.com",reason="timeout"} 1"#),
            "{text}"
        );
        assert!(
            !text.contains("fluxgate_gitrepository_failing_since_timestamp_seconds{"),
            "0 would read as failing since 1970: {text}"
        );
    }

    #[test]
    fn hosts_are_tallied_while_they_have_records() {
        let store = Store::default();
        store.relist_start(0);
        store.relist_apply(0, &repo("proj-1", "a", "u1", failing("i/o timeout")));
        store.relist_apply(0, &repo("proj-1", "b", "u2", ready()));
        store.relist_done(0, true, NOW);
        let tally = |store: &Store| store.host_tallies().get("github.com").copied();
        let expected = HostTally {
            records: 2,
            transport_failing: 1,
            quarantine_marked: 0,
            ready: 1,
        };
        assert_eq!(tally(&store), Some(expected));
        store.apply(0, &repo("proj-1", "a", "u1", ready()), NOW);
        let expected = HostTally {
            transport_failing: 0,
            ready: 2,
            ..expected
        };
        assert_eq!(tally(&store), Some(expected));
        store.delete("u1", NOW);
        store.delete("u2", NOW);
        assert_eq!(tally(&store), None);
    }

    #[test]
    fn deleted_namespaces_and_hosts_release_their_strings() {
        let store = Store::default();
        store.relist_start(0);
        store.relist_apply(0, &repo("proj-1", "a", "u1", failing("i/o timeout")));
        store.relist_done(0, true, NOW);
        for i in 0..50 {
            let ns = format!("tmp-{i}");
            store.apply(0, &repo(&ns, "a", &ns, failing("i/o timeout")), NOW);
            store.apply(0, &repo(&ns, "a", &ns, ready()), NOW);
            store.delete(&ns, NOW);
        }
        store.delete("unknown-uid", NOW);
        assert_eq!(store.len(), 1);
        // Only proj-1 and github.com: the tmp-* namespaces and the empty host of records that
        // are not failed went with their records.
        assert_eq!(store.interned(), 2);
        assert_eq!(store.records()[0].host.as_ref(), "github.com");
        store.delete("u1", NOW);
        assert_eq!(store.interned(), 0);
    }

    /// prometheus-client's own encoding of a gauge family, as the exporter's families were
    /// encoded before they were chunked: the chunked encoder must produce the same text.
    fn reference_gauge<L: prometheus_client::encoding::EncodeLabelSet>(
        encoder: &mut DescriptorEncoder,
        name: &str,
        help: &str,
        series: impl Iterator<Item = (L, i64)>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        let mut family = encoder.encode_descriptor(
            name.trim_start_matches("fluxgate_"),
            help,
            None,
            prometheus_client::metrics::MetricType::Gauge,
        )?;
        for (labels, value) in series {
            prometheus_client::metrics::gauge::ConstGauge::new(value)
                .encode(family.encode_family(&labels)?)?;
        }
        Ok(())
    }

    #[derive(Debug)]
    struct Reference(Vec<FailingSeries>);

    impl Collector for Reference {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            reference_gauge(
                &mut encoder,
                FAILING_SINCE_FAMILY,
                FAILING_SINCE_HELP,
                self.0.iter().map(|s| {
                    (
                        [
                            ("namespace", &*s.namespace),
                            ("name", &*s.name),
                            ("host", &*s.host),
                            ("reason", s.class.as_str()),
                        ],
                        s.since,
                    )
                }),
            )
        }
    }

    fn reference_text(series: Vec<FailingSeries>) -> String {
        let mut registry = prometheus_client::registry::Registry::with_prefix("fluxgate");
        registry.register_collector(Box::new(Reference(series)));
        let mut text = String::new();
        prometheus_client::encoding::text::encode_registry(&mut text, &registry).unwrap();
        text
    }

    fn chunked_text(store: &Arc<Store>) -> (String, Vec<usize>) {
        let mut text = Vec::new();
        let mut sizes = Vec::new();
        for chunk in FailingSinceFamily(store.clone()).chunks() {
            sizes.push(chunk.len());
            text.extend_from_slice(&chunk);
        }
        (String::from_utf8(text).unwrap(), sizes)
    }

    fn insert_failing(store: &Store, uid: &str, namespace: Arc<str>, name: &str, host: Arc<str>) {
        store.lock().insert(
            uid.into(),
            Record {
                namespace,
                name: name.into(),
                state: State::Failed,
                unobserved: true,
                host,
                class: Some(FailureClass::Timeout),
                failing_since: NOW,
                attempt_seconds: 0,
                created: NOW - 60,
                scope: 0,
                lane: 0,
                resource_version: 1,
                marks: None,
            },
        );
    }

    proptest::proptest! {
        #[test]
        fn the_chunked_family_is_what_prometheus_client_would_write(
            hosts in proptest::collection::vec("[a-z.\\\\\"\\n\\PC]{0,12}", 1..20),
        ) {
            let store = Arc::new(Store::default());
            for (i, host) in hosts.iter().enumerate() {
                insert_failing(&store, &format!("u{i}"), Arc::from(format!("ns-{}", i % 3)),
                    &format!("r-{i}"), Arc::from(host.as_str()));
            }
            // Namespaces here are equal strings behind different pointers, unlike interned ones.
            let order: Vec<(String, String)> = store
                .failing_since()
                .iter()
                .map(|s| (s.namespace.to_string(), s.name.to_string()))
                .collect();
            let mut sorted = order.clone();
            sorted.sort();
            proptest::prop_assert_eq!(order, sorted);
            let (chunked, _) = chunked_text(&store);
            proptest::prop_assert_eq!(chunked, reference_text(store.failing_since()));
        }
    }

    /// The counts as a scrape would have computed them from the records alone: what the counts
    /// kept up to date must always equal.
    fn counted_from_scratch(store: &Store) -> Aggregate {
        let mut agg = Aggregate::default();
        let lanes = store.lock().counts.lanes.clone();
        for r in store.records() {
            agg.objects += 1;
            let lane = usize::from(r.lane)
                .checked_sub(1)
                .and_then(|i| lanes.get(i).cloned());
            if let Some(lane) = &lane {
                *agg.by_lane.entry((lane.clone(), r.state)).or_default() += 1;
            }
            *agg.by_state
                .entry((r.namespace.clone(), r.state))
                .or_default() += 1;
            if r.unobserved {
                *agg.unobserved.entry(r.namespace.clone()).or_default() += 1;
            }
            match r.state {
                State::Failed => {
                    let class = r.class.unwrap_or(FailureClass::Other);
                    *agg.failed
                        .entry((r.namespace.clone(), r.host.clone(), class))
                        .or_default() += 1;
                }
                State::Pending if r.created > 0 => {
                    let oldest = match lane {
                        Some(lane) => agg.lane_oldest_pending.entry(lane),
                        None => agg.oldest_pending.entry(r.namespace.clone()),
                    }
                    .or_insert(r.created);
                    *oldest = (*oldest).min(r.created);
                }
                _ => {}
            }
        }
        agg
    }

    #[derive(Debug, Clone)]
    enum Change {
        /// Object `uid` in namespace `ns` with the given status (0 ready, 1 failed on host a,
        /// 2 failed on host b, 3 pending, 4 suspended) and creation minute.
        Apply {
            uid: u8,
            ns: u8,
            status: u8,
            created: u8,
            scope: u16,
        },
        Delete {
            uid: u8,
        },
        /// A re-list of `scope` that brings back the listed uids.
        Relist {
            scope: u16,
            uids: Vec<u8>,
        },
    }

    fn status_health(uid: u8, ns: u8, status: u8, created: u8) -> Health {
        let ns = format!("ns-{ns}");
        let name = format!("r-{uid}");
        let uid = format!("u{uid}");
        let minute = created % 60;
        let created = format!("2026-11-28T10:{minute:02}:00Z");
        let mut object = json!({
            "metadata": { "name": name, "namespace": ns, "uid": uid, "generation": 2,
                          "creationTimestamp": created },
            "spec": { "url": if status == 2 { "https://gitlab.com/o/r" } else { "https://github.com/o/r" },
                      "interval": "1m", "suspend": status == 4 },
        });
        // Some in a host lane, named by the object's minute.
        if minute.is_multiple_of(3) {
            object["metadata"]["labels"] = json!({ crate::flux::SHARD_LABEL: if minute.is_multiple_of(2) { "far" } else { "slow" } });
        }
        match status {
            0 => object["status"] = ready().unwrap(),
            1 | 2 => object["status"] = failing("context deadline exceeded").unwrap(),
            _ => {}
        }
        classify(&object).unwrap()
    }

    fn change() -> impl proptest::strategy::Strategy<Value = Change> {
        use proptest::prelude::*;
        prop_oneof![
            4 => (0..12u8, 0..4u8, 0..5u8, 0..60u8, 0..2u16)
                .prop_map(|(uid, ns, status, created, scope)| Change::Apply { uid, ns, status, created, scope }),
            2 => (0..12u8).prop_map(|uid| Change::Delete { uid }),
            1 => (0..2u16, proptest::collection::vec(0..12u8, 0..6))
                .prop_map(|(scope, uids)| Change::Relist { scope, uids }),
        ]
    }

    proptest::proptest! {
        #[test]
        fn kept_counts_always_equal_counts_from_the_records(
            changes in proptest::collection::vec(change(), 1..60),
        ) {
            let store = Store::default();
            for change in changes {
                match change {
                    Change::Apply { uid, ns, status, created, scope } => {
                        store.apply(scope, &status_health(uid, ns, status, created), NOW);
                    }
                    Change::Delete { uid } => store.delete(&format!("u{uid}"), NOW),
                    Change::Relist { scope, uids } => {
                        store.relist_start(scope);
                        for uid in uids {
                            store.relist_apply(scope, &status_health(uid, uid % 4, uid % 5, uid));
                        }
                        store.relist_done(scope, true, NOW);
                    }
                }
                proptest::prop_assert_eq!(store.aggregate(), counted_from_scratch(&store));
            }
            // Nothing left behind once every object is gone, strings included.
            for uid in 0..12u8 {
                store.delete(&format!("u{uid}"), NOW);
            }
            proptest::prop_assert_eq!(store.aggregate(), Aggregate::default());
            proptest::prop_assert_eq!(store.interned(), 0);
        }
    }

    #[test]
    fn the_failing_family_is_sent_in_bounded_chunks_of_whole_lines() {
        let store = Arc::new(Store::default());
        let ns: Arc<str> = Arc::from("tenant");
        let host: Arc<str> = Arc::from("github.com");
        for i in 0..5_000 {
            insert_failing(
                &store,
                &format!("u{i}"),
                ns.clone(),
                &format!("project-{i:05}"),
                host.clone(),
            );
        }
        let (text, sizes) = chunked_text(&store);
        assert!(sizes.len() > 1, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n < CHUNK_BYTES + 512), "{sizes:?}");
        assert_eq!(text, reference_text(store.failing_since()));
        let lines: Vec<&str> = text.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(lines.len(), 5_000);
        assert!(
            lines[0].contains(r#"name="project-00000""#),
            "sorted by name: {}",
            lines[0]
        );
        assert!(
            lines[4_999].contains(r#"name="project-04999""#),
            "{}",
            lines[4_999]
        );
    }

    /// The store's gauges as prometheus-client wrote them from the same counts, before they
    /// were chunked.
    #[derive(Debug)]
    struct GaugesReference(Arc<Store>);

    impl Collector for GaugesReference {
        fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
            let agg = self.0.aggregate();
            let e = &mut encoder;
            reference_gauge(
                e,
                "gitrepositories",
                GAUGE_HELP[0],
                agg.by_state.iter().map(|((ns, state), n)| {
                    ([("namespace", &**ns), ("state", state.as_str())], *n)
                }),
            )?;
            reference_gauge(
                e,
                "gitrepositories_failed",
                GAUGE_HELP[1],
                agg.failed.iter().map(|((ns, host, class), n)| {
                    (
                        [
                            ("namespace", &**ns),
                            ("host", &**host),
                            ("reason", class.as_str()),
                        ],
                        *n,
                    )
                }),
            )?;
            reference_gauge(
                e,
                "gitrepositories_quarantined",
                GAUGE_HELP[2],
                agg.quarantined
                    .iter()
                    .map(|((ns, host), n)| ([("namespace", &**ns), ("host", &**host)], *n)),
            )?;
            reference_gauge(
                e,
                "lane_gitrepositories",
                GAUGE_HELP[3],
                agg.by_lane
                    .iter()
                    .map(|((lane, state), n)| ([("lane", &**lane), ("state", state.as_str())], *n)),
            )?;
            reference_gauge(
                e,
                "lane_oldest_pending_timestamp_seconds",
                GAUGE_HELP[4],
                agg.lane_oldest_pending
                    .iter()
                    .map(|(lane, t)| ([("lane", &**lane)], *t)),
            )?;
            reference_gauge(
                e,
                "gitrepositories_unobserved",
                GAUGE_HELP[5],
                agg.unobserved
                    .iter()
                    .map(|(ns, n)| ([("namespace", &**ns)], *n)),
            )?;
            reference_gauge(
                e,
                "gitrepositories_oldest_pending_timestamp_seconds",
                GAUGE_HELP[6],
                agg.oldest_pending
                    .iter()
                    .map(|(ns, t)| ([("namespace", &**ns)], *t)),
            )
        }
    }

    const GAUGE_HELP: [&str; 7] = [
        "GitRepositories by namespace and state (ready, failed, pending, suspended, quarantined, progressing).",
        "Failed GitRepositories (Ready=False, not suspended) by namespace, Git host and failure class.",
        "GitRepositories the host circuit breaker suspended until their host answers again, by namespace and Git host.",
        "GitRepositories in a host lane (Flux's sharding.fluxcd.io/key label, served by that lane's source-controller), by lane and state.",
        "Creation time of the oldest GitRepository without any status condition in a host lane (waiting for that lane's source-controller), by lane.",
        "GitRepositories whose observedGeneration is missing, -1 or behind their generation.",
        "Creation time of the oldest GitRepository without any status condition, outside host lanes, by namespace.",
    ];

    #[test]
    fn the_gauges_are_sent_in_bounded_chunks_as_prometheus_client_would_write_them() {
        let store = Arc::new(Store::default());
        store.relist_start(0);
        for i in 0..6_000 {
            let ns = format!("tenant-{:04}", i % 2_000);
            let status = match i % 3 {
                0 => failing("context deadline exceeded"),
                1 => ready(),
                _ => None,
            };
            store.relist_apply(0, &repo(&ns, &format!("r{i}"), &format!("u{i}"), status));
        }
        store.relist_done(0, true, NOW);
        let mut sizes = Vec::new();
        let mut text = Vec::new();
        for chunk in StoreFamilies(store.clone()).chunks() {
            sizes.push(chunk.len());
            text.extend_from_slice(&chunk);
        }
        assert!(sizes.len() > 2, "{sizes:?}");
        assert!(sizes.iter().all(|&n| n < CHUNK_BYTES + 512), "{sizes:?}");
        let mut registry = prometheus_client::registry::Registry::with_prefix("fluxgate");
        registry.register_collector(Box::new(GaugesReference(store.clone())));
        let mut reference = String::new();
        prometheus_client::encoding::text::encode_registry(&mut reference, &registry).unwrap();
        let text = String::from_utf8(text).unwrap();
        // The watcher's own families follow the gauges (checked in the whole exposition's test).
        let gauges = &text[..text.find("# HELP fluxgate_watcher_objects").unwrap()];
        assert_eq!(gauges, reference);
        assert_eq!(gauges.matches("\n# HELP ").count() + 1, 7);
    }

    /// The whole text of `family`, when a failing GitRepository named `name` was added after
    /// the scrape started but before its first chunk was pulled.
    fn text_with_one_added_meanwhile(
        family: &dyn ChunkedFamily,
        store: &Store,
        name: &str,
    ) -> String {
        let chunks = family.chunks();
        insert_failing(store, name, Arc::from("ns"), name, Arc::from("github.com"));
        String::from_utf8(chunks.flat_map(|c| c.to_vec()).collect()).unwrap()
    }

    #[test]
    fn a_scrape_copies_the_store_only_when_it_reaches_a_family() {
        let store = Arc::new(Store::default());
        let failing = FailingSinceFamily(store.clone());
        let text = text_with_one_added_meanwhile(&failing, &store, "late");
        assert!(text.contains(r#"name="late""#), "{text}");
        let gauges = StoreFamilies(store.clone());
        let text = text_with_one_added_meanwhile(&gauges, &store, "later");
        assert!(text.contains("fluxgate_watcher_objects 2\n"), "{text}");
    }

    #[test]
    fn equal_namespaces_behind_different_strings_are_one_series() {
        // Records share interned strings, but the counts must not depend on it.
        let store = Arc::new(Store::default());
        for (uid, name) in [("u1", "a"), ("u2", "b")] {
            // A fresh allocation of the same text for each record.
            insert_failing(
                &store,
                uid,
                Arc::from("proj"),
                name,
                Arc::from("github.com"),
            );
        }
        let text = encode(&store);
        let samples = samples(&text);
        for series in [
            r#"fluxgate_gitrepositories{namespace="proj",state="failed"} 2"#,
            r#"fluxgate_gitrepositories_failed{namespace="proj",host="github.com",reason="timeout"} 2"#,
            r#"fluxgate_gitrepositories_unobserved{namespace="proj"} 2"#,
        ] {
            assert_eq!(
                samples.iter().filter(|l| **l == series).count(),
                1,
                "{series} in {text}"
            );
        }
        assert_eq!(
            samples
                .iter()
                .filter(|l| l.starts_with("fluxgate_gitrepositories{"))
                .count(),
            1,
            "{text}"
        );
    }

    #[test]
    fn an_empty_store_still_describes_the_failing_family() {
        let store = Arc::new(Store::default());
        let (text, _) = chunked_text(&store);
        assert_eq!(text, reference_text(Vec::new()));
        assert!(text.starts_with("# HELP fluxgate_gitrepository_failing_since_timestamp_seconds "));
        assert!(encode(&store).ends_with(
            "# TYPE fluxgate_gitrepository_failing_since_timestamp_seconds gauge\n# EOF\n"
        ));
    }

    #[test]
    fn lanes_are_counted_by_state_and_follow_their_records() {
        let in_lane = |name: &str, uid: &str, status: Option<Value>, lane: &str| {
            let mut health = repo("proj-1", name, uid, status);
            health.lane = Some(lane.to_owned());
            health
        };
        let store = Store::default();
        store.relist_start(0);
        store.relist_apply(0, &in_lane("a", "u1", failing("i/o timeout"), "far"));
        store.relist_apply(0, &in_lane("b", "u2", ready(), "far"));
        store.relist_apply(0, &repo("proj-1", "c", "u3", ready()));
        store.relist_done(0, true, NOW);
        let lanes = |store: &Store| -> Vec<(String, &'static str, i64)> {
            store
                .aggregate()
                .by_lane
                .iter()
                .map(|((lane, state), n)| (lane.to_string(), state.as_str(), *n))
                .collect()
        };
        assert_eq!(
            lanes(&store),
            [("far".into(), "ready", 1), ("far".into(), "failed", 1)]
        );
        // Moved back to the main source-controller: gone from the lane's series.
        store.apply(0, &repo("proj-1", "a", "u1", ready()), NOW);
        store.apply(0, &in_lane("c", "u3", ready(), "near"), NOW);
        assert_eq!(
            lanes(&store),
            [("far".into(), "ready", 1), ("near".into(), "ready", 1)]
        );
        // A re-list keeps the lanes' names.
        store.relist_start(0);
        store.relist_apply(0, &in_lane("b", "u2", ready(), "far"));
        store.relist_done(0, true, NOW);
        assert_eq!(lanes(&store), [("far".into(), "ready", 1)]);
    }

    #[test]
    fn a_lanes_waiting_records_are_apart_from_the_main_controllers() {
        let at = |minute: i64| NOW + 60 * minute;
        let pending = |name: &str, uid: &str, lane: Option<&str>, minute: i64| {
            let mut health = repo("proj-1", name, uid, None);
            health.lane = lane.map(str::to_owned);
            health.created = time::OffsetDateTime::from_unix_timestamp(at(minute)).ok();
            health
        };
        let store = Arc::new(Store::default());
        store.relist_start(0);
        store.relist_apply(0, &pending("main", "u1", None, 10));
        store.relist_apply(0, &pending("far-old", "u2", Some("far"), 1));
        store.relist_apply(0, &pending("far-new", "u3", Some("far"), 5));
        store.relist_apply(0, &pending("slow", "u4", Some("slow"), 7));
        store.relist_done(0, true, NOW);
        let agg = store.aggregate();
        let oldest = |m: &BTreeMap<Arc<str>, i64>| -> Vec<(String, i64)> {
            m.iter().map(|(k, t)| (k.to_string(), *t)).collect()
        };
        // The main source-controller's oldest waits since minute 10, whatever the lanes hold.
        assert_eq!(oldest(&agg.oldest_pending), [("proj-1".into(), at(10))]);
        assert_eq!(
            oldest(&agg.lane_oldest_pending),
            [("far".into(), at(1)), ("slow".into(), at(5 + 2))]
        );
        let text = encode(&store);
        assert!(
            text.contains(&format!(
                "fluxgate_lane_oldest_pending_timestamp_seconds{{lane=\"far\"}} {}",
                at(1)
            )),
            "{text}"
        );
        // Picked up by the lane's source-controller: the lane's oldest is the next one, and the
        // first-reconcile histogram (the main source-controller's) does not count the wait.
        let mut started = repo("proj-1", "far-old", "u2", failing("i/o timeout"));
        started.lane = Some("far".to_owned());
        store.apply(0, &started, NOW);
        assert_eq!(
            oldest(&store.aggregate().lane_oldest_pending),
            [("far".into(), at(5)), ("slow".into(), at(7))]
        );
        assert!(
            encode(&store).contains("fluxgate_gitrepository_first_reconcile_seconds_count 0"),
            "{}",
            encode(&store)
        );
    }

    #[test]
    fn a_record_stays_small() {
        assert!(
            std::mem::size_of::<Record>() <= 88,
            "{}",
            std::mem::size_of::<Record>()
        );
    }

    #[test]
    fn records_share_namespace_and_host_strings() {
        let store = Store::default();
        store.relist_start(0);
        for i in 0..100 {
            store.relist_apply(
                0,
                &repo(
                    "proj-1",
                    &format!("r{i}"),
                    &format!("u{i}"),
                    failing("timeout"),
                ),
            );
        }
        store.relist_done(0, true, NOW);
        let records = store.records();
        assert!(
            records
                .windows(2)
                .all(|w| Arc::ptr_eq(&w[0].namespace, &w[1].namespace))
        );
        assert!(
            records
                .windows(2)
                .all(|w| Arc::ptr_eq(&w[0].host, &w[1].host))
        );
    }
}
