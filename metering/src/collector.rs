//! The collector loop: watch, integrate, checkpoint.
//!
//! One [`run`] is one *term* of a collector: it acquires the fence in the ledger, loads
//! every agency's checkpoint, lists the owner objects and namespaces, then follows
//! watch events of Pods, PersistentVolumeClaims and DataServiceClaims and writes what
//! it counted every `flush_interval`. A term ends on shutdown (after a last flush and
//! releasing the fence) or on an error that makes its memory untrustworthy (fenced off,
//! a conflicting writer): the caller starts a new term, which resumes from the stored
//! checkpoints. While the ledger is unavailable the term keeps counting in memory and
//! writes everything at the next successful flush.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::pin::Pin;
use std::time::Duration;

use futures::{Stream, StreamExt};
use govbroker_crds::DataServiceClaim;
use govbroker_domain::isolation::{AGENCY_LABEL, ENVIRONMENT_LABEL};
use govbroker_domain::metering::{Attribution, Integrator, Rates};
use govbroker_ledger::LedgerOptions;
use govbroker_ledger::usage::{AgencyCheckpoint, AgencyCommit, Fence, UsageError, UsageLedger};
use k8s_openapi::api::apps::v1::{Deployment, ReplicaSet, StatefulSet};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, PersistentVolumeClaim, Pod};
use kube::api::{Api, ListParams, PartialObjectMeta};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, watcher::watcher};
use kube::{Client, Resource, ResourceExt};
use tokio_util::sync::CancellationToken;

use crate::metrics::Metrics;
use crate::objects::{Owners, claim_holds, controller_of, pod_holds, pod_stopped, pvc_holds};

/// How a collector runs.
#[derive(Clone, Debug)]
pub struct CollectorConfig {
    /// Ledger etcd endpoints.
    pub endpoints: Vec<String>,
    /// Key prefix in the ledger etcd.
    pub prefix: String,
    /// This collector's identity, recorded in the fence.
    pub holder: String,
    /// How often counted usage and checkpoints are written. It bounds what a crash can
    /// leave unobserved (see `docs/billing.md`).
    pub flush_interval: Duration,
    /// TTL of the fence's lease in seconds: a dead collector's successor waits at most
    /// this long. Must exceed `flush_interval`, which is when the lease is renewed.
    pub lease_ttl: i64,
    /// Ledger timeouts.
    pub ledger: LedgerOptions,
    /// How often month-to-date costs, budgets and their Events are updated in the
    /// Agencies' status (`None`: never).
    pub cost_interval: Option<Duration>,
}

/// Why a term ended.
#[derive(Debug, thiserror::Error)]
pub enum CollectorError {
    /// The ledger refused or lost the fence, or is unreachable at start.
    #[error(transparent)]
    Usage(#[from] UsageError),
    /// The ledger at start.
    #[error(transparent)]
    Ledger(#[from] govbroker_ledger::LedgerError),
    /// The Kubernetes API failed at start.
    #[error("listing {what} failed: {source}")]
    Kube {
        /// What was listed.
        what: &'static str,
        /// The error.
        #[source]
        source: kube::Error,
    },
}

/// What kind of object an open interval belongs to (the prefix of its key).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Kind {
    Pod,
    Pvc,
    Claim,
}

impl Kind {
    fn prefix(self) -> &'static str {
        match self {
            Kind::Pod => "pod/",
            Kind::Pvc => "pvc/",
            Kind::Claim => "claim/",
        }
    }
    fn of(key: &str) -> Option<Kind> {
        [Kind::Pod, Kind::Pvc, Kind::Claim]
            .into_iter()
            .find(|k| key.starts_with(k.prefix()))
    }
}

/// An owner link: namespace, kind, name and the controlling owner's kind and name.
type OwnerLink = (String, String, String, Option<(String, String)>);

#[allow(clippy::large_enum_variant)] // one change at a time: never stored in bulk
enum Change {
    Namespace(Event<PartialObjectMeta<Namespace>>),
    Owner(Event<OwnerLink>),
    Pod(Box<Event<Pod>>),
    Pvc(Event<PersistentVolumeClaim>),
    Claim(Event<DataServiceClaim>),
    Failed(&'static str, watcher::Error),
}

type Changes = Pin<Box<dyn Stream<Item = Change> + Send>>;

fn now() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// The integrating state of one term.
struct State {
    integrator: Integrator,
    namespaces: HashMap<String, (String, String)>,
    owners: Owners,
    /// Everything before this instant is counted (in memory).
    floor: i64,
    /// Checkpoint revisions by agency.
    revisions: BTreeMap<String, i64>,
    /// Agencies whose stored checkpoint lists open intervals.
    stored_open: BTreeSet<String>,
    /// Keys listed since the last `Init` of each kind.
    listing: HashMap<Kind, HashSet<String>>,
    /// Kinds whose first listing of this term has completed.
    listed_once: HashSet<Kind>,
    epoch: u64,
}

impl State {
    fn attribution(
        &self,
        namespace: &str,
        kind: &str,
        name: &str,
        owner: Option<(String, String)>,
    ) -> Option<Attribution> {
        let (agency, environment) = self.namespaces.get(namespace)?;
        Some(Attribution {
            agency: agency.clone(),
            environment: environment.clone(),
            namespace: namespace.to_owned(),
            workload: self.owners.top(namespace, kind, name, owner),
        })
    }

    /// An object now holds `holds` (or nothing), billed to `attribution`.
    fn hold(
        &mut self,
        key: &str,
        now: i64,
        attribution: Option<Attribution>,
        holds: Option<(i64, Rates)>,
        stopped: Option<i64>,
    ) {
        let open = self.integrator.open_interval(key).cloned();
        match (attribution, holds) {
            (Some(attribution), Some((since, rates))) => match open {
                Some(open) if open.rates == rates && open.attribution == attribution => {}
                // A resize or a move: the new rates from now.
                Some(_) => self
                    .integrator
                    .observe(key, now, Some((attribution, rates))),
                None => {
                    let at = since.clamp(self.floor, now);
                    self.integrator.observe(key, at, Some((attribution, rates)));
                }
            },
            _ => {
                if let Some(open) = open {
                    let end = stopped.unwrap_or(now).clamp(open.since, now);
                    self.integrator.observe(key, end, None);
                }
            }
        }
    }

    fn listed(&mut self, kind: Kind, key: String) {
        self.listing.entry(kind).or_default().insert(key);
    }

    /// After a (re)listing of `kind`: objects that were open but are no longer listed
    /// went away while nobody watched. In the first listing of a term that is the
    /// downtime since the checkpoint: recorded as an unobserved bound. Later (a watch
    /// that reconnected) the gap is the reconnection: they are closed now.
    fn listing_done(&mut self, kind: Kind, now: i64) {
        let listed = self.listing.remove(&kind).unwrap_or_default();
        let gone: Vec<String> = self
            .integrator
            .open_intervals()
            .keys()
            .filter(|k| Kind::of(k) == Some(kind) && !listed.contains(*k))
            .cloned()
            .collect();
        let first = self.listed_once.insert(kind);
        for key in gone {
            if first {
                tracing::info!(%key, "an object vanished while no collector watched; its usage since the checkpoint is recorded as an unobserved bound");
                self.integrator.observe_gap(&key, now);
            } else {
                self.integrator.observe(&key, now, None);
            }
        }
    }

    fn apply(&mut self, change: Change, metrics: &Metrics) {
        let now = now();
        match change {
            Change::Namespace(event) => match event {
                Event::Apply(ns) | Event::InitApply(ns) => {
                    let labels = ns.labels();
                    let name = ns.name_any();
                    match (labels.get(AGENCY_LABEL), labels.get(ENVIRONMENT_LABEL)) {
                        (Some(a), Some(e)) => {
                            self.namespaces.insert(name, (a.clone(), e.clone()));
                        }
                        _ => {
                            self.namespaces.remove(&name);
                        }
                    }
                }
                // Objects of a deleted namespace are deleted with it and close then.
                Event::Delete(_) | Event::Init | Event::InitDone => {}
            },
            Change::Owner(event) => match event {
                Event::Apply((ns, kind, name, owner))
                | Event::InitApply((ns, kind, name, owner)) => {
                    self.owners.set(&ns, &kind, &name, owner)
                }
                Event::Delete((ns, kind, name, _)) => self.owners.set(&ns, &kind, &name, None),
                Event::Init | Event::InitDone => {}
            },
            Change::Pod(event) => {
                metrics.events.with_label_values(&["pod"]).inc();
                match *event {
                    Event::Init => {
                        self.listing.insert(Kind::Pod, HashSet::new());
                    }
                    Event::InitDone => self.listing_done(Kind::Pod, now),
                    Event::Apply(pod) | Event::InitApply(pod) => {
                        let key = format!("pod/{}", pod.uid().unwrap_or_default());
                        self.listed(Kind::Pod, key.clone());
                        let who = self.attribution(
                            &pod.namespace().unwrap_or_default(),
                            "Pod",
                            &pod.name_any(),
                            controller_of(pod.metadata.owner_references.as_ref()),
                        );
                        // A pod whose deletion was requested stops counting then.
                        let holds = if pod.metadata.deletion_timestamp.is_some() {
                            None
                        } else {
                            pod_holds(&pod)
                        };
                        self.hold(&key, now, who, holds, pod_stopped(&pod));
                    }
                    Event::Delete(pod) => {
                        let key = format!("pod/{}", pod.uid().unwrap_or_default());
                        self.hold(&key, now, None, None, pod_stopped(&pod));
                    }
                }
            }
            Change::Pvc(event) => {
                metrics.events.with_label_values(&["pvc"]).inc();
                match event {
                    Event::Init => {
                        self.listing.insert(Kind::Pvc, HashSet::new());
                    }
                    Event::InitDone => self.listing_done(Kind::Pvc, now),
                    Event::Apply(pvc) | Event::InitApply(pvc) => {
                        let key = format!("pvc/{}", pvc.uid().unwrap_or_default());
                        self.listed(Kind::Pvc, key.clone());
                        let who = self.attribution(
                            &pvc.namespace().unwrap_or_default(),
                            "PersistentVolumeClaim",
                            &pvc.name_any(),
                            controller_of(pvc.metadata.owner_references.as_ref()),
                        );
                        // A PVC being deleted (kept by its protection finalizer while a
                        // pod uses it) stops counting when its deletion was requested.
                        let deleting = pvc
                            .metadata
                            .deletion_timestamp
                            .as_ref()
                            .map(crate::objects::seconds);
                        let holds = if deleting.is_some() {
                            None
                        } else {
                            pvc_holds(&pvc)
                        };
                        self.hold(&key, now, who, holds, deleting);
                    }
                    Event::Delete(pvc) => {
                        let key = format!("pvc/{}", pvc.uid().unwrap_or_default());
                        let deleted = pvc
                            .metadata
                            .deletion_timestamp
                            .as_ref()
                            .map(crate::objects::seconds);
                        self.hold(&key, now, None, None, deleted);
                    }
                }
            }
            Change::Claim(event) => {
                metrics
                    .events
                    .with_label_values(&["dataserviceclaim"])
                    .inc();
                match event {
                    Event::Init => {
                        self.listing.insert(Kind::Claim, HashSet::new());
                    }
                    Event::InitDone => self.listing_done(Kind::Claim, now),
                    Event::Apply(claim) | Event::InitApply(claim) => {
                        let key = format!("claim/{}", claim.uid().unwrap_or_default());
                        self.listed(Kind::Claim, key.clone());
                        let who = self.attribution(
                            &claim.namespace().unwrap_or_default(),
                            "DataServiceClaim",
                            &claim.name_any(),
                            None,
                        );
                        let deleting = claim
                            .metadata
                            .deletion_timestamp
                            .as_ref()
                            .map(crate::objects::seconds);
                        let holds = if deleting.is_some() {
                            None
                        } else {
                            claim_holds(&claim)
                        };
                        self.hold(&key, now, who, holds, deleting);
                    }
                    Event::Delete(claim) => {
                        let key = format!("claim/{}", claim.uid().unwrap_or_default());
                        let deleted = claim
                            .metadata
                            .deletion_timestamp
                            .as_ref()
                            .map(crate::objects::seconds);
                        self.hold(&key, now, None, None, deleted);
                    }
                }
            }
            Change::Failed(what, error) => {
                metrics.watch_errors.with_label_values(&[what]).inc();
                tracing::warn!(%error, what, "watch failed; it retries with backoff");
            }
        }
    }

    /// Everything counted up to `now`, as one commit per agency.
    fn commits(
        &mut self,
        now: i64,
    ) -> (
        Vec<AgencyCommit>,
        BTreeMap<(String, govbroker_domain::metering::Day), govbroker_domain::metering::DayBuckets>,
    ) {
        self.integrator.advance(now);
        self.floor = self.floor.max(now);
        let days = self.integrator.take_days();
        let mut commits: BTreeMap<String, AgencyCommit> = BTreeMap::new();
        let epoch = self.epoch;
        let revisions = &self.revisions;
        let commit_for = |agency: &str| -> AgencyCommit {
            AgencyCommit {
                checkpoint: AgencyCheckpoint {
                    agency: agency.to_owned(),
                    watermark: now,
                    epoch,
                    open: BTreeMap::new(),
                },
                days: BTreeMap::new(),
                expected_revision: revisions.get(agency).copied().unwrap_or(0),
            }
        };
        for ((agency, day), buckets) in &days {
            commits
                .entry(agency.clone())
                .or_insert_with(|| commit_for(agency))
                .days
                .insert(*day, buckets.clone());
        }
        for (key, open) in self.integrator.open_intervals() {
            let agency = &open.attribution.agency;
            commits
                .entry(agency.clone())
                .or_insert_with(|| commit_for(agency))
                .checkpoint
                .open
                .insert(key.clone(), open.clone());
        }
        for agency in &self.stored_open {
            commits
                .entry(agency.clone())
                .or_insert_with(|| commit_for(agency));
        }
        (commits.into_values().collect(), days)
    }
}

fn owner_stream<K>(client: &Client, kind: &'static str) -> Changes
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let api: Api<PartialObjectMeta<K>> = Api::all(client.clone());
    watcher(api, watcher::Config::default())
        .default_backoff()
        .map(move |r| match r {
            Ok(event) => Change::Owner(event.map(|m: PartialObjectMeta<K>| {
                (
                    m.namespace().unwrap_or_default(),
                    kind.to_owned(),
                    m.name_any(),
                    controller_of(m.metadata.owner_references.as_ref()),
                )
            })),
            Err(e) => Change::Failed(kind, e),
        })
        .boxed()
}

trait EventMap<K> {
    fn map<T>(self, f: impl FnMut(K) -> T) -> Event<T>;
}

impl<K> EventMap<K> for Event<K> {
    fn map<T>(self, mut f: impl FnMut(K) -> T) -> Event<T> {
        match self {
            Event::Apply(k) => Event::Apply(f(k)),
            Event::Delete(k) => Event::Delete(f(k)),
            Event::InitApply(k) => Event::InitApply(f(k)),
            Event::Init => Event::Init,
            Event::InitDone => Event::InitDone,
        }
    }
}

async fn prime(client: &Client, state: &mut State) -> Result<(), CollectorError> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let list = namespaces
        .list_metadata(&ListParams::default().labels(AGENCY_LABEL))
        .await
        .map_err(|source| CollectorError::Kube {
            what: "namespaces",
            source,
        })?;
    for ns in list.items {
        let labels = ns.labels();
        if let (Some(a), Some(e)) = (labels.get(AGENCY_LABEL), labels.get(ENVIRONMENT_LABEL)) {
            state
                .namespaces
                .insert(ns.name_any(), (a.clone(), e.clone()));
        }
    }
    async fn owners<K>(
        client: &Client,
        kind: &'static str,
        state: &mut State,
    ) -> Result<(), CollectorError>
    where
        K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let api: Api<K> = Api::all(client.clone());
        let mut params = ListParams::default().limit(500);
        loop {
            let list = api
                .list_metadata(&params)
                .await
                .map_err(|source| CollectorError::Kube { what: kind, source })?;
            for m in &list.items {
                state.owners.set(
                    &m.namespace().unwrap_or_default(),
                    kind,
                    &m.name_any(),
                    controller_of(m.metadata.owner_references.as_ref()),
                );
            }
            match list.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => return Ok(()),
            }
        }
    }
    owners::<ReplicaSet>(client, "ReplicaSet", state).await?;
    owners::<Deployment>(client, "Deployment", state).await?;
    owners::<StatefulSet>(client, "StatefulSet", state).await?;
    owners::<Job>(client, "Job", state).await?;
    Ok(())
}

/// Acquires the fence, waiting while another collector holds it.
async fn acquire(
    ledger: &UsageLedger,
    config: &CollectorConfig,
    shutdown: &CancellationToken,
) -> Result<Option<Fence>, CollectorError> {
    loop {
        match ledger.acquire(&config.holder, config.lease_ttl).await {
            Ok(fence) => return Ok(Some(fence)),
            Err(UsageError::Held { holder, epoch }) => {
                tracing::info!(%holder, epoch, "another collector holds the fence; waiting");
            }
            Err(e) => return Err(e.into()),
        }
        tokio::select! {
            () = shutdown.cancelled() => return Ok(None),
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Runs one term of the collector until `shutdown` or an error (see the module
/// documentation).
pub async fn run(
    client: Client,
    config: CollectorConfig,
    metrics: Metrics,
    shutdown: CancellationToken,
) -> Result<(), CollectorError> {
    let ledger =
        UsageLedger::connect(&config.endpoints, &config.prefix, config.ledger.clone()).await?;
    let Some(fence) = acquire(&ledger, &config, &shutdown).await? else {
        return Ok(());
    };
    tracing::info!(holder = %config.holder, epoch = fence.holder.epoch, "holding the metering fence");
    let result = term(&client, &config, &metrics, &shutdown, &ledger, &fence).await;
    if let Err(e) = ledger.release(&fence).await {
        tracing::warn!(error = %e, "could not release the fence; it expires with its lease");
    }
    result
}

async fn term(
    client: &Client,
    config: &CollectorConfig,
    metrics: &Metrics,
    shutdown: &CancellationToken,
    ledger: &UsageLedger,
    fence: &Fence,
) -> Result<(), CollectorError> {
    let stored = ledger.load_checkpoints().await?;
    let watermark = ledger.watermark().await?.map(|w| w.watermark);
    let mut floor = watermark.unwrap_or(i64::MIN);
    let mut open = Vec::new();
    let mut revisions = BTreeMap::new();
    let mut stored_open = BTreeSet::new();
    for s in stored {
        floor = floor.max(s.checkpoint.watermark);
        revisions.insert(s.checkpoint.agency.clone(), s.revision);
        if !s.checkpoint.open.is_empty() {
            stored_open.insert(s.checkpoint.agency.clone());
        }
        open.extend(s.checkpoint.open);
    }
    let start = now();
    if floor == i64::MIN {
        floor = start;
    } else if start > floor {
        tracing::info!(
            unobserved_seconds = start - floor,
            "resuming from the checkpoints; objects gone meanwhile are recorded as unobserved bounds"
        );
    }
    let mut state = State {
        integrator: Integrator::resume(open),
        namespaces: HashMap::new(),
        owners: Owners::default(),
        floor,
        revisions,
        stored_open,
        listing: HashMap::new(),
        listed_once: HashSet::new(),
        epoch: fence.holder.epoch,
    };
    prime(client, &mut state).await?;

    let namespaces = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        watcher::Config::default().labels(AGENCY_LABEL),
    )
    .default_backoff()
    .map(|r| match r {
        Ok(e) => Change::Namespace(e),
        Err(e) => Change::Failed("namespaces", e),
    })
    .boxed();
    let pods = watcher(Api::<Pod>::all(client.clone()), watcher::Config::default())
        .default_backoff()
        .map(|r| {
            r.map(|e| Change::Pod(Box::new(e)))
                .unwrap_or_else(|e| Change::Failed("pods", e))
        })
        .boxed();
    let pvcs = watcher(
        Api::<PersistentVolumeClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| {
        r.map(Change::Pvc)
            .unwrap_or_else(|e| Change::Failed("pvcs", e))
    })
    .boxed();
    let claims = watcher(
        Api::<DataServiceClaim>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff()
    .map(|r| {
        r.map(Change::Claim)
            .unwrap_or_else(|e| Change::Failed("dataserviceclaims", e))
    })
    .boxed();
    let streams: Vec<Changes> = vec![
        namespaces,
        owner_stream::<ReplicaSet>(client, "ReplicaSet"),
        owner_stream::<Deployment>(client, "Deployment"),
        owner_stream::<StatefulSet>(client, "StatefulSet"),
        owner_stream::<Job>(client, "Job"),
        pods,
        pvcs,
        claims,
    ];
    let mut changes = futures::stream::select_all(streams);
    let mut ticker = tokio::time::interval(config.flush_interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticker.tick().await;
    let recorder = crate::costs::recorder(client, &config.holder);
    let mut cost_ticker =
        tokio::time::interval(config.cost_interval.unwrap_or(Duration::from_secs(3600)));
    cost_ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cost_ticker.tick(), if config.cost_interval.is_some() => {
                match crate::costs::update_all(client, ledger, &metrics.costs, &recorder).await {
                    Ok(n) => tracing::debug!(updated = n, "agency costs updated"),
                    Err(e) => tracing::warn!(error = %e, "could not update agency costs"),
                }
            }
            () = shutdown.cancelled() => {
                flush(&mut state, ledger, fence, metrics).await?;
                return Ok(());
            }
            _ = ticker.tick() => {
                flush(&mut state, ledger, fence, metrics).await?;
            }
            change = changes.next() => match change {
                Some(change) => state.apply(change, metrics),
                None => return Ok(()),
            },
        }
    }
}

/// Writes what was counted; keeps it in memory when the ledger is unavailable.
async fn flush(
    state: &mut State,
    ledger: &UsageLedger,
    fence: &Fence,
    metrics: &Metrics,
) -> Result<(), UsageError> {
    let now = now();
    let (commits, days) = state.commits(now);
    let started = std::time::Instant::now();
    match ledger.commit(fence, &commits).await {
        Ok(revisions) => {
            metrics.ledger_writes.inc_by(commits.len() as u64);
            state.revisions.extend(revisions);
            state.stored_open = commits
                .iter()
                .filter(|c| !c.checkpoint.open.is_empty())
                .map(|c| c.checkpoint.agency.clone())
                .collect();
            metrics
                .open_intervals
                .set(state.integrator.open_intervals().len() as i64);
            metrics.last_flush.set(now);
            metrics
                .flush_seconds
                .observe(started.elapsed().as_secs_f64());
            ledger.heartbeat(fence, now).await?;
            ledger.refresh(fence).await?;
            Ok(())
        }
        Err(UsageError::Ledger(e)) if e.is_retryable() => {
            metrics.ledger_write_errors.inc();
            tracing::warn!(error = %e, "the ledger is unavailable; usage stays in memory and is written at the next flush");
            state.integrator.restore_days(days);
            // Keep the lease if we can; losing it ends the term at the next write.
            let _ = ledger.refresh(fence).await;
            Ok(())
        }
        Err(e) => {
            metrics.ledger_write_errors.inc();
            Err(e)
        }
    }
}
