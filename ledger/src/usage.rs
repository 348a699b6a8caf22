//! Metering usage in the ledger etcd: one record per agency and billing day, written
//! with compare-and-swap, a checkpoint per agency, and a fence so that only one
//! collector writes.
//!
//! # Key layout (under a prefix, `/govbroker` by default)
//!
//! | key | value |
//! | --- | --- |
//! | `<prefix>/usage/days/<YYYY-MM>/<agency>/<DD>` | JSON [`UsageDayRecord`]: the agency's usage of that billing day |
//! | `<prefix>/usage/checkpoints/<agency>` | JSON [`AgencyCheckpoint`]: the agency's open intervals and watermark |
//! | `<prefix>/usage/collector/lease` | JSON [`FenceHolder`], attached to an etcd lease: who may write |
//! | `<prefix>/usage/collector/epoch` | the number of the last fence granted |
//! | `<prefix>/usage/collector/watermark` | JSON [`CollectorWatermark`]: until when the collector watched everything |
//! | `<prefix>/bills/<YYYY-MM>/<agency>` | JSON array of [`BillVersion`]: a re-rated month's bills, the current one last |
//!
//! Month first, so that a national month's bills are one range read and one agency's
//! month is another.
//!
//! # Exactly once
//!
//! An agency is the unit of atomicity: its day records and its checkpoint change in
//! **one** transaction, guarded by (a) the fence (the lease key still has the
//! `create_revision` the collector got when it acquired it) and (b) the `mod_revision`
//! of the agency's checkpoint and day records as read. A collector that was fenced off
//! (its lease expired and another collector acquired it) or that is behind (someone
//! wrote after it read) writes nothing. The checkpoint stores every open interval with
//! the instant up to which it was counted, so a restarted collector counts each second
//! once. Several agencies share a transaction (at most [`MAX_TXN_PUTS`] puts) to keep
//! the write rate down; they then succeed or fail together.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use govbroker_domain::billing::BillVersion;
use govbroker_domain::metering::{Day, DayBuckets, DayUsage, Month, OpenInterval};
use serde::{Deserialize, Serialize};

use crate::audit::error::{LedgerError, TransportError};
use crate::audit::store::LedgerOptions;

/// etcd's default `--max-txn-ops` is 128; stay below it for puts and compares alike.
pub const MAX_TXN_PUTS: usize = 120;

/// Largest value written (etcd refuses requests over 1.5 MiB).
pub const MAX_VALUE_BYTES: usize = 1024 * 1024;

/// One agency's usage of one billing day, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageDayRecord {
    /// The agency.
    pub agency: String,
    /// The billing day (Asia/Ho_Chi_Minh).
    pub day: Day,
    /// Usage and unobserved bounds, broken down by environment, namespace, workload and
    /// resource.
    #[serde(flatten)]
    pub usage: DayUsage,
    /// UTC Unix second up to which the collector had counted when it last wrote.
    pub counted_until: i64,
    /// The fence epoch of the collector that last wrote.
    pub epoch: u64,
}

/// One agency's checkpoint: what it holds now and up to when it was counted.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgencyCheckpoint {
    /// The agency.
    pub agency: String,
    /// UTC Unix second up to which all of the agency's usage is counted in its day
    /// records.
    pub watermark: i64,
    /// The fence epoch of the collector that wrote it.
    pub epoch: u64,
    /// Open intervals by object uid; their `since` is at most `watermark`.
    pub open: BTreeMap<String, OpenInterval>,
}

/// Who holds the collector fence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FenceHolder {
    /// The collector's identity (pod name, host and pid, ...).
    pub holder: String,
    /// The fence's number: it grows with every acquisition.
    pub epoch: u64,
}

/// Until when the collector watched every object (its heartbeat).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CollectorWatermark {
    /// UTC Unix second.
    pub watermark: i64,
    /// The fence epoch of the collector that wrote it.
    pub epoch: u64,
}

/// A fence held by this process: every write is conditional on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fence {
    /// Who holds it and its epoch.
    pub holder: FenceHolder,
    lease_id: i64,
    create_revision: i64,
}

/// One agency's changes in a commit.
#[derive(Clone, Debug)]
pub struct AgencyCommit {
    /// The new checkpoint (its `agency` names the agency).
    pub checkpoint: AgencyCheckpoint,
    /// Usage counted since the previous checkpoint, per day: added to the stored days.
    pub days: BTreeMap<Day, DayBuckets>,
    /// `mod_revision` of the checkpoint this one replaces (0: none), from
    /// [`UsageLedger::load_checkpoints`] or the previous commit.
    pub expected_revision: i64,
}

/// What went wrong with usage in the ledger.
#[derive(Debug, thiserror::Error)]
pub enum UsageError {
    /// etcd unavailable, refused, or a key is corrupt.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
    /// Another collector holds the fence.
    #[error(
        "the metering collector fence is held by {holder} (epoch {epoch}); only one collector writes usage: wait for its lease to expire or stop it"
    )]
    Held {
        /// Its holder.
        holder: String,
        /// Its epoch.
        epoch: u64,
    },
    /// This collector's fence was lost (lease expired or taken over): it must stop
    /// writing and restart from the stored checkpoints.
    #[error(
        "this collector ({holder}, epoch {epoch}) no longer holds the metering fence; it must reload the checkpoints before writing again"
    )]
    Fenced {
        /// This collector.
        holder: String,
        /// Its epoch.
        epoch: u64,
    },
    /// A checkpoint or day record changed since it was read.
    #[error(
        "usage of agency {agency} changed in the ledger since this collector read it; reload its checkpoint"
    )]
    Conflict {
        /// The first agency of the failed batch whose keys moved.
        agency: String,
    },
}

/// Two re-rates of one month at once: the stored versions changed since they were read.
#[derive(Debug, thiserror::Error)]
#[error(
    "the bill of agency {agency} for {month} was re-rated by someone else meanwhile; read it again and retry"
)]
pub struct BillsChanged {
    /// The agency.
    pub agency: String,
    /// The month.
    pub month: Month,
}

/// A stored checkpoint with the `mod_revision` that guards replacing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCheckpoint {
    /// The checkpoint.
    pub checkpoint: AgencyCheckpoint,
    /// Its `mod_revision`.
    pub revision: i64,
}

/// Usage records in the ledger etcd. Cheap to clone.
#[derive(Clone)]
pub struct UsageLedger {
    client: Client,
    prefix: String,
    endpoints: String,
    options: LedgerOptions,
}

impl std::fmt::Debug for UsageLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsageLedger")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

fn corrupt(kv: &KeyValue, reason: impl std::fmt::Display) -> LedgerError {
    LedgerError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: reason.to_string(),
    }
}

/// `<prefix>/usage/days/<YYYY-MM>/<agency>/<DD>`.
fn day_key(prefix: &str, agency: &str, day: Day) -> String {
    let (_, _, d) = day.ymd();
    format!("{prefix}/usage/days/{}/{agency}/{d:02}", day.month())
}

fn check_agency(agency: &str) -> Result<(), LedgerError> {
    if agency.is_empty() || agency.contains('/') || agency.chars().any(char::is_control) {
        return Err(LedgerError::InvalidEntry(format!(
            "agency {agency:?} cannot be a key segment: non-empty, without '/' or control characters"
        )));
    }
    Ok(())
}

impl UsageLedger {
    /// Connects and checks that etcd answers (within the options' timeouts).
    pub async fn connect(
        endpoints: &[String],
        prefix: &str,
        options: LedgerOptions,
    ) -> Result<UsageLedger, LedgerError> {
        if endpoints.is_empty() {
            return Err(LedgerError::InvalidConfig(
                "no ledger etcd endpoints given".into(),
            ));
        }
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') || trimmed.len() < 2 {
            return Err(LedgerError::InvalidConfig(format!(
                "key prefix {prefix:?} must start with '/' and hold at least one more character"
            )));
        }
        let joined = endpoints.join(",");
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_tcp_keepalive(Duration::from_secs(30));
        let client = match tokio::time::timeout(
            options.connect_timeout + options.request_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(err)) => return Err(LedgerError::from_etcd(&joined, "connect", err)),
            Err(_) => {
                return Err(LedgerError::Unavailable {
                    endpoints: joined,
                    operation: "connect",
                    source: TransportError::TimedOut {
                        after: options.connect_timeout + options.request_timeout,
                    },
                });
            }
        };
        let ledger = UsageLedger {
            client,
            prefix: trimmed.to_owned(),
            endpoints: joined,
            options,
        };
        let mut kv = ledger.client.kv_client();
        ledger
            .call("connect", kv.get(ledger.lease_key(), None))
            .await?;
        Ok(ledger)
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    fn lease_key(&self) -> String {
        format!("{}/usage/collector/lease", self.prefix)
    }

    fn epoch_key(&self) -> String {
        format!("{}/usage/collector/epoch", self.prefix)
    }

    fn watermark_key(&self) -> String {
        format!("{}/usage/collector/watermark", self.prefix)
    }

    fn checkpoints_prefix(&self) -> String {
        format!("{}/usage/checkpoints/", self.prefix)
    }

    fn checkpoint_key(&self, agency: &str) -> String {
        format!("{}{agency}", self.checkpoints_prefix())
    }

    fn month_prefix(&self, month: Month) -> String {
        format!("{}/usage/days/{month}/", self.prefix)
    }

    fn day_key(&self, agency: &str, day: Day) -> String {
        day_key(&self.prefix, agency, day)
    }

    async fn call<T>(
        &self,
        operation: &'static str,
        request: impl Future<Output = Result<T, etcd_client::Error>>,
    ) -> Result<T, LedgerError> {
        match tokio::time::timeout(self.options.request_timeout, request).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(err)) => Err(LedgerError::from_etcd(&self.endpoints, operation, err)),
            Err(_) => Err(LedgerError::Unavailable {
                endpoints: self.endpoints.clone(),
                operation,
                source: TransportError::TimedOut {
                    after: self.options.request_timeout,
                },
            }),
        }
    }

    /// Acquires the collector fence for `holder` with a lease of `ttl` seconds, or says
    /// who holds it. The epoch grows with every acquisition, so records say which
    /// collector wrote them.
    pub async fn acquire(&self, holder: &str, ttl: i64) -> Result<Fence, UsageError> {
        let mut lease = self.client.lease_client();
        let grant = self
            .call("grant lease", lease.grant(ttl.max(2), None))
            .await?;
        let lease_id = grant.id();
        let mut kv = self.client.kv_client();
        let current = self
            .call("read fence", kv.get(self.lease_key(), None))
            .await?;
        if let Some(existing) = current.kvs().first() {
            let _ = self.call("revoke lease", lease.revoke(lease_id)).await;
            let held: FenceHolder =
                serde_json::from_slice(existing.value()).map_err(|e| corrupt(existing, e))?;
            return Err(UsageError::Held {
                holder: held.holder,
                epoch: held.epoch,
            });
        }
        let epoch_response = self
            .call("read epoch", kv.get(self.epoch_key(), None))
            .await?;
        let (epoch, epoch_guard) = match epoch_response.kvs().first() {
            Some(kv) => {
                let text = std::str::from_utf8(kv.value()).map_err(|e| corrupt(kv, e))?;
                let epoch: u64 = text.parse().map_err(|e| corrupt(kv, e))?;
                (
                    epoch,
                    Compare::mod_revision(self.epoch_key(), CompareOp::Equal, kv.mod_revision()),
                )
            }
            None => (0, Compare::version(self.epoch_key(), CompareOp::Equal, 0)),
        };
        let holder = FenceHolder {
            holder: holder.to_owned(),
            epoch: epoch + 1,
        };
        let txn = Txn::new()
            .when([
                Compare::version(self.lease_key(), CompareOp::Equal, 0),
                epoch_guard,
            ])
            .and_then([
                TxnOp::put(
                    self.lease_key(),
                    serde_json::to_vec(&holder).expect("fence JSON"),
                    Some(PutOptions::new().with_lease(lease_id)),
                ),
                TxnOp::put(self.epoch_key(), holder.epoch.to_string(), None),
            ])
            .or_else([TxnOp::get(self.lease_key(), None)]);
        let response = self.call("acquire fence", kv.txn(txn)).await?;
        if !response.succeeded() {
            let _ = self.call("revoke lease", lease.revoke(lease_id)).await;
            let held = response.op_responses().into_iter().find_map(|r| match r {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .and_then(|kv| serde_json::from_slice::<FenceHolder>(kv.value()).ok()),
                _ => None,
            });
            return Err(match held {
                Some(held) => UsageError::Held {
                    holder: held.holder,
                    epoch: held.epoch,
                },
                // The epoch moved under us: someone acquired and lost it meanwhile.
                None => UsageError::Held {
                    holder: "another collector".into(),
                    epoch: epoch + 1,
                },
            });
        }
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        Ok(Fence {
            holder,
            lease_id,
            create_revision: revision,
        })
    }

    /// Keeps the fence's lease alive; call it well within the lease's TTL. Fails with
    /// [`UsageError::Fenced`] once the lease has expired.
    pub async fn refresh(&self, fence: &Fence) -> Result<(), UsageError> {
        let mut lease = self.client.lease_client();
        let answer = async {
            let (mut keeper, mut stream) = self
                .call("keep lease alive", lease.keep_alive(fence.lease_id))
                .await?;
            self.call("keep lease alive", keeper.keep_alive()).await?;
            self.call("keep lease alive", stream.message()).await
        }
        .await;
        match answer {
            Ok(Some(a)) if a.ttl() > 0 => Ok(()),
            // etcd answers an expired lease with "lease not found" (or a TTL of 0).
            Ok(_) | Err(LedgerError::Rejected { .. }) => Err(Self::fenced(fence)),
            Err(e) => Err(e.into()),
        }
    }

    /// Gives the fence up (on shutdown), so that a successor need not wait for the
    /// lease to expire.
    pub async fn release(&self, fence: &Fence) -> Result<(), LedgerError> {
        let mut lease = self.client.lease_client();
        self.call("revoke lease", lease.revoke(fence.lease_id))
            .await
            .map(|_| ())
    }

    fn fence_guard(&self, fence: &Fence) -> Compare {
        Compare::create_revision(self.lease_key(), CompareOp::Equal, fence.create_revision)
    }

    fn fenced(fence: &Fence) -> UsageError {
        UsageError::Fenced {
            holder: fence.holder.holder.clone(),
            epoch: fence.holder.epoch,
        }
    }

    /// Every agency's checkpoint with its guarding revision.
    pub async fn load_checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let mut out = Vec::new();
        for kv in self
            .range(&self.checkpoints_prefix(), "read checkpoints")
            .await?
        {
            let checkpoint: AgencyCheckpoint =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(&kv, e))?;
            out.push(StoredCheckpoint {
                checkpoint,
                revision: kv.mod_revision(),
            });
        }
        Ok(out)
    }

    /// The collector's last heartbeat.
    pub async fn watermark(&self) -> Result<Option<CollectorWatermark>, LedgerError> {
        let mut kv = self.client.kv_client();
        let response = self
            .call("read watermark", kv.get(self.watermark_key(), None))
            .await?;
        match response.kvs().first() {
            Some(kv) => Ok(Some(
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv, e))?,
            )),
            None => Ok(None),
        }
    }

    /// Records that the collector watched everything until `watermark` (fenced).
    pub async fn heartbeat(&self, fence: &Fence, watermark: i64) -> Result<(), UsageError> {
        let value = CollectorWatermark {
            watermark,
            epoch: fence.holder.epoch,
        };
        let txn = Txn::new()
            .when([self.fence_guard(fence)])
            .and_then([TxnOp::put(
                self.watermark_key(),
                serde_json::to_vec(&value).expect("watermark JSON"),
                None,
            )]);
        let mut kv = self.client.kv_client();
        let response = self.call("write watermark", kv.txn(txn)).await?;
        if response.succeeded() {
            Ok(())
        } else {
            Err(Self::fenced(fence))
        }
    }

    async fn range(
        &self,
        prefix: &str,
        operation: &'static str,
    ) -> Result<Vec<KeyValue>, LedgerError> {
        let mut out = Vec::new();
        let end = prefix_end(prefix);
        let mut from = prefix.as_bytes().to_vec();
        loop {
            let options = GetOptions::new().with_range(end.clone()).with_limit(1000);
            let mut kv = self.client.kv_client();
            let response = self
                .call(operation, kv.get(from.clone(), Some(options)))
                .await?;
            let kvs = response.kvs();
            if let Some(last) = kvs.last() {
                from = last.key().to_vec();
                from.push(0);
            }
            let more = response.more() && !kvs.is_empty();
            out.extend(kvs.iter().cloned());
            if !more {
                return Ok(out);
            }
        }
    }

    /// Writes a batch of agencies' changes: each agency's day records (stored usage
    /// plus the delta) and its new checkpoint, in as few transactions as fit
    /// [`MAX_TXN_PUTS`]. Returns each agency's new checkpoint revision.
    ///
    /// All of one agency's keys change in the same transaction. On
    /// [`UsageError::Conflict`] or [`UsageError::Fenced`] the failed transaction wrote
    /// nothing; earlier transactions of the batch stay written (their revisions are
    /// lost with the error, so reload the checkpoints).
    pub async fn commit(
        &self,
        fence: &Fence,
        batch: &[AgencyCommit],
    ) -> Result<BTreeMap<String, i64>, UsageError> {
        let mut revisions = BTreeMap::new();
        let mut chunk: Vec<&AgencyCommit> = Vec::new();
        let mut puts = 0;
        for commit in batch {
            check_agency(&commit.checkpoint.agency)?;
            let needed = 1 + commit.days.len();
            if puts + needed > MAX_TXN_PUTS && !chunk.is_empty() {
                revisions.extend(self.commit_chunk(fence, &chunk).await?);
                chunk.clear();
                puts = 0;
            }
            chunk.push(commit);
            puts += needed;
        }
        if !chunk.is_empty() {
            revisions.extend(self.commit_chunk(fence, &chunk).await?);
        }
        Ok(revisions)
    }

    async fn commit_chunk(
        &self,
        fence: &Fence,
        chunk: &[&AgencyCommit],
    ) -> Result<BTreeMap<String, i64>, UsageError> {
        // Read the stored days to add to.
        let day_keys: Vec<(String, Day, String)> = chunk
            .iter()
            .flat_map(|c| {
                c.days.keys().map(|d| {
                    (
                        c.checkpoint.agency.clone(),
                        *d,
                        self.day_key(&c.checkpoint.agency, *d),
                    )
                })
            })
            .collect();
        let mut stored: BTreeMap<String, (DayUsage, i64)> = BTreeMap::new();
        for part in day_keys.chunks(100) {
            let txn = Txn::new().and_then(
                part.iter()
                    .map(|(_, _, key)| TxnOp::get(key.clone(), None))
                    .collect::<Vec<_>>(),
            );
            let mut kv = self.client.kv_client();
            let response = self.call("read usage days", kv.txn(txn)).await?;
            for op in response.op_responses() {
                if let TxnOpResponse::Get(get) = op
                    && let Some(kv) = get.kvs().first()
                {
                    let record: UsageDayRecord =
                        serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv, e))?;
                    stored.insert(
                        String::from_utf8_lossy(kv.key()).into_owned(),
                        (record.usage, kv.mod_revision()),
                    );
                }
            }
        }
        let mut compares = vec![self.fence_guard(fence)];
        let mut puts = Vec::new();
        for commit in chunk {
            let agency = &commit.checkpoint.agency;
            let key = self.checkpoint_key(agency);
            compares.push(if commit.expected_revision == 0 {
                Compare::version(key.clone(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(key.clone(), CompareOp::Equal, commit.expected_revision)
            });
            let value = serde_json::to_vec(&commit.checkpoint).expect("checkpoint JSON");
            if value.len() > MAX_VALUE_BYTES {
                return Err(LedgerError::InvalidEntry(format!(
                    "the checkpoint of agency {agency} would take {} bytes, more than {MAX_VALUE_BYTES}",
                    value.len()
                ))
                .into());
            }
            puts.push(TxnOp::put(key, value, None));
            for (day, delta) in &commit.days {
                let key = self.day_key(agency, *day);
                let (usage, guard) = match stored.get(&key) {
                    Some((usage, revision)) => {
                        let mut buckets = DayBuckets::default();
                        buckets.merge(usage);
                        buckets.merge(&delta.to_usage());
                        (
                            buckets.to_usage(),
                            Compare::mod_revision(key.clone(), CompareOp::Equal, *revision),
                        )
                    }
                    None => (
                        delta.to_usage(),
                        Compare::version(key.clone(), CompareOp::Equal, 0),
                    ),
                };
                compares.push(guard);
                let record = UsageDayRecord {
                    agency: agency.clone(),
                    day: *day,
                    usage,
                    counted_until: commit.checkpoint.watermark,
                    epoch: fence.holder.epoch,
                };
                puts.push(TxnOp::put(
                    key,
                    serde_json::to_vec(&record).expect("usage JSON"),
                    None,
                ));
            }
        }
        let txn = Txn::new()
            .when(compares)
            .and_then(puts)
            .or_else([TxnOp::get(self.lease_key(), None)]);
        let mut kv = self.client.kv_client();
        let response = self.call("write usage", kv.txn(txn)).await?;
        if !response.succeeded() {
            let still_ours = response.op_responses().into_iter().any(|r| match r {
                TxnOpResponse::Get(get) => get
                    .kvs()
                    .first()
                    .is_some_and(|kv| kv.create_revision() == fence.create_revision),
                _ => false,
            });
            return Err(if still_ours {
                UsageError::Conflict {
                    agency: chunk[0].checkpoint.agency.clone(),
                }
            } else {
                Self::fenced(fence)
            });
        }
        let revision = response.header().map(|h| h.revision()).unwrap_or(0);
        Ok(chunk
            .iter()
            .map(|c| (c.checkpoint.agency.clone(), revision))
            .collect())
    }

    /// One agency's day records of a month, by day.
    pub async fn agency_month(
        &self,
        agency: &str,
        month: Month,
    ) -> Result<BTreeMap<Day, DayUsage>, LedgerError> {
        check_agency(agency)?;
        let prefix = format!("{}{agency}/", self.month_prefix(month));
        let mut out = BTreeMap::new();
        for kv in self.range(&prefix, "read usage").await? {
            let record: UsageDayRecord =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(&kv, e))?;
            out.insert(record.day, record.usage);
        }
        Ok(out)
    }

    fn bills_key(&self, agency: &str, month: Month) -> String {
        format!("{}/bills/{month}/{agency}", self.prefix)
    }

    /// The stored versions of an agency's bill for `month` (empty until the month is
    /// re-rated; the current bill is the last) and the `mod_revision` that guards
    /// replacing them (0: none stored).
    pub async fn bill_versions(
        &self,
        agency: &str,
        month: Month,
    ) -> Result<(Vec<BillVersion>, i64), LedgerError> {
        check_agency(agency)?;
        let mut kv = self.client.kv_client();
        let response = self
            .call("read bills", kv.get(self.bills_key(agency, month), None))
            .await?;
        match response.kvs().first() {
            Some(kv) => Ok((
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(kv, e))?,
                kv.mod_revision(),
            )),
            None => Ok((Vec::new(), 0)),
        }
    }

    /// Replaces the stored versions of an agency's bill for `month` if they are still
    /// those read at `expected_revision` (compare-and-swap: two re-rates at once cannot
    /// lose one); `Ok(Err(BillsChanged))` otherwise. Re-rating appends, so earlier
    /// versions are never dropped by the caller.
    pub async fn store_bill_versions(
        &self,
        agency: &str,
        month: Month,
        versions: &[BillVersion],
        expected_revision: i64,
    ) -> Result<Result<(), BillsChanged>, LedgerError> {
        check_agency(agency)?;
        let key = self.bills_key(agency, month);
        let value = serde_json::to_vec(versions).expect("bill JSON");
        if value.len() > MAX_VALUE_BYTES {
            return Err(LedgerError::InvalidEntry(format!(
                "the bills of agency {agency} for {month} would take {} bytes, more than {MAX_VALUE_BYTES}",
                value.len()
            )));
        }
        let guard = if expected_revision == 0 {
            Compare::version(key.clone(), CompareOp::Equal, 0)
        } else {
            Compare::mod_revision(key.clone(), CompareOp::Equal, expected_revision)
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(key, value, None)]);
        let mut kv = self.client.kv_client();
        let response = self.call("write bills", kv.txn(txn)).await?;
        if response.succeeded() {
            Ok(Ok(()))
        } else {
            Ok(Err(BillsChanged {
                agency: agency.to_owned(),
                month,
            }))
        }
    }

    /// Every agency's day records of a month (for the national run of bills), by
    /// agency and day.
    pub async fn month(
        &self,
        month: Month,
    ) -> Result<BTreeMap<String, BTreeMap<Day, DayUsage>>, LedgerError> {
        let mut out: BTreeMap<String, BTreeMap<Day, DayUsage>> = BTreeMap::new();
        for kv in self.range(&self.month_prefix(month), "read usage").await? {
            let record: UsageDayRecord =
                serde_json::from_slice(kv.value()).map_err(|e| corrupt(&kv, e))?;
            out.entry(record.agency)
                .or_default()
                .insert(record.day, record.usage);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn day_keys_sort_by_month_agency_and_day() {
        let day: Day = "2026-11-05".parse().unwrap();
        assert_eq!(
            day_key("/govbroker", "so-y-te", day),
            "/govbroker/usage/days/2026-11/so-y-te/05"
        );
        assert_eq!(prefix_end("/a/"), b"/a0".to_vec());
    }

    #[test]
    fn records_read_back() {
        let record = UsageDayRecord {
            agency: "so-y-te".into(),
            day: "2026-11-05".parse().unwrap(),
            usage: DayUsage::default(),
            counted_until: 1_794_700_800,
            epoch: 3,
        };
        let json = serde_json::to_string(&record).unwrap();
        assert_eq!(
            json,
            r#"{"agency":"so-y-te","day":"2026-11-05","countedUntil":1794700800,"epoch":3}"#
        );
        assert_eq!(
            serde_json::from_str::<UsageDayRecord>(&json).unwrap(),
            record
        );
        assert!(check_agency("a/b").is_err());
    }
}
