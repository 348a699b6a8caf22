//! The audit trail in govbroker's own etcd.
//!
//! # Key layout (under a prefix, `/govbroker` by default)
//!
//! | key | value |
//! | --- | --- |
//! | `<prefix>/audit/head` | JSON [`ChainHead`]: `{"seq":N,"hash":"<hex>"}` of the last record |
//! | `<prefix>/audit/records/<seq, 20 digits>` | JSON [`AuditRecord`] (camelCase) |
//! | `<prefix>/audit/by-agency/<agency>/<seq, 20 digits>` | empty: index of the records whose target names that agency |
//!
//! Seqs are zero-padded so that etcd's byte order is seq order. One append writes the
//! record, its index key and the new head in a single transaction guarded by the head's
//! `mod_revision`, so concurrent writers (API replicas) serialise through etcd and the
//! chain stays gap-free.

use std::collections::hash_map::RandomState;
use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KeyValue, Txn, TxnOp, TxnOpResponse,
};
use jiff::Timestamp;
use tokio::sync::Mutex;

use super::chain::{AuditEntry, AuditRecord, ChainBreak, ChainHead, ChainSummary, ChainVerifier};
use super::error::{LedgerError, TransportError};

/// Prefix the provisioning API uses.
pub const DEFAULT_PREFIX: &str = "/govbroker";

/// Most records one [`AuditLog::list`] or [`AuditLog::range`] call returns.
pub const MAX_PAGE: usize = 1000;

/// Largest record (as stored JSON) an append accepts. etcd refuses requests over 1.5 MiB;
/// an audit record is a few hundred bytes, so anything near this is a caller bug (a whole
/// request pasted into the message) and is refused before it reaches etcd.
pub const MAX_RECORD_BYTES: usize = 64 * 1024;

/// Most records one filtered [`AuditLog::list`] call examines before returning a page
/// (possibly short) with `next_after_seq` set, so a selective query over a large log
/// cannot hold a request open for minutes.
pub const MAX_SCAN: usize = 10_000;

/// etcd's default `--max-txn-ops` is 128: batched reads stay below it.
const MAX_TXN_READS: usize = 100;

/// Timeouts and retry bounds of an [`AuditLog`].
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Time to establish a TCP connection to an endpoint.
    pub connect_timeout: Duration,
    /// Time any single etcd request may take, connection included. The client queues
    /// requests while no endpoint is ready, so this is what turns "etcd is down" into an
    /// error instead of a hang.
    pub request_timeout: Duration,
    /// Appends attempted before giving up with [`LedgerError::Conflict`].
    pub max_append_attempts: u32,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(3),
            max_append_attempts: 32,
        }
    }
}

/// Which records [`AuditLog::list`] returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditQuery {
    /// Only records whose target names this agency.
    pub agency: Option<String>,
    /// Only records with `time >= since`.
    pub since: Option<Timestamp>,
    /// Only records with `time < until`.
    pub until: Option<Timestamp>,
    /// Only records after this seq: the previous page's `next_after_seq`.
    pub after_seq: Option<u64>,
    /// Most records to return (at least 1; capped at [`MAX_PAGE`]).
    pub limit: usize,
}

impl Default for AuditQuery {
    fn default() -> Self {
        Self {
            agency: None,
            since: None,
            until: None,
            after_seq: None,
            limit: 100,
        }
    }
}

/// One page of [`AuditLog::list`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPage {
    /// Matching records in seq order.
    pub records: Vec<AuditRecord>,
    /// Set when more records may match: pass it as [`AuditQuery::after_seq`] for the next
    /// page. With time filters a page can be short (even empty) while this is set,
    /// because the scan stops after [`MAX_SCAN`] records; keep paging until it is `None`.
    pub next_after_seq: Option<u64>,
}

/// The head as last written or read, with the etcd `mod_revision` that guards the next
/// append (0: the head key does not exist yet).
#[derive(Debug, Clone)]
struct GuardedHead {
    head: ChainHead,
    mod_revision: i64,
}

/// A connection to the audit trail in the ledger etcd. Cheap to clone; clones share the
/// connection and serialise their appends.
#[derive(Clone)]
pub struct AuditLog {
    client: Client,
    keys: Keys,
    endpoints: String,
    options: LedgerOptions,
    /// Appends from one process are serialised here: they would only conflict in etcd
    /// anyway, and holding the head we last wrote lets the next append skip reading it.
    head: Arc<Mutex<Option<GuardedHead>>>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("endpoints", &self.endpoints)
            .field("prefix", &self.keys.prefix)
            .finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Connects with [`LedgerOptions::default`] and checks that etcd answers.
    ///
    /// `prefix` isolates one log from another (tests use `/govbroker-test-<random>`; the
    /// API uses [`DEFAULT_PREFIX`]). Returns [`LedgerError::Unavailable`] within a few
    /// seconds when no endpoint answers.
    pub async fn connect(endpoints: &[String], prefix: &str) -> Result<Self, LedgerError> {
        Self::connect_with(endpoints, prefix, LedgerOptions::default()).await
    }

    /// [`AuditLog::connect`] with explicit timeouts and retry bounds.
    pub async fn connect_with(
        endpoints: &[String],
        prefix: &str,
        options: LedgerOptions,
    ) -> Result<Self, LedgerError> {
        if endpoints.is_empty() {
            return Err(LedgerError::InvalidConfig(
                "no ledger etcd endpoints given".into(),
            ));
        }
        let keys = Keys::new(prefix)?;
        let joined = endpoints.join(",");
        let connect = ConnectOptions::new()
            .with_connect_timeout(options.connect_timeout)
            .with_timeout(options.request_timeout)
            .with_tcp_keepalive(Duration::from_secs(30));
        // The client connects lazily, so this only fails on unusable URLs; the probe
        // below is what finds out whether etcd answers.
        let client = match tokio::time::timeout(
            options.connect_timeout + options.request_timeout,
            Client::connect(endpoints, Some(connect)),
        )
        .await
        {
            Ok(Ok(client)) => client,
            Ok(Err(err @ etcd_client::Error::InvalidUri(_)))
            | Ok(Err(err @ etcd_client::Error::InvalidArgs(_))) => {
                return Err(LedgerError::InvalidConfig(format!("{joined}: {err}")));
            }
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
        let log = Self {
            client,
            keys,
            endpoints: joined,
            options,
            head: Arc::new(Mutex::new(None)),
        };
        let head = log.read_head("connect").await?;
        *log.head.lock().await = Some(head);
        Ok(log)
    }

    /// The endpoints this log talks to, comma-separated.
    pub fn endpoints(&self) -> &str {
        &self.endpoints
    }

    /// The key prefix (without a trailing `/`).
    pub fn prefix(&self) -> &str {
        &self.keys.prefix
    }

    /// Records `entry` as the next record of the chain and returns it.
    ///
    /// Safe to call from several processes at once: each attempt is one etcd
    /// transaction that only commits if the head is still the one it chained to; a loser
    /// re-chains to the winner's head (returned by the same transaction) after a short
    /// jittered pause, at most [`LedgerOptions::max_append_attempts`] times.
    ///
    /// After [`LedgerError::Unavailable`] the record may or may not have been written
    /// (a timeout does not say); retrying may record the event twice, never half.
    pub async fn append(&self, entry: AuditEntry) -> Result<AuditRecord, LedgerError> {
        validate_entry(&entry)?;
        let mut cached = self.head.lock().await;
        let result = self.append_locked(entry, cached.take()).await;
        match result {
            Ok((record, head)) => {
                *cached = Some(head);
                Ok(record)
            }
            // The cache stays empty: the next append reads the head afresh.
            Err(err) => Err(err),
        }
    }

    async fn append_locked(
        &self,
        entry: AuditEntry,
        cached: Option<GuardedHead>,
    ) -> Result<(AuditRecord, GuardedHead), LedgerError> {
        let mut guard = match cached {
            Some(head) => head,
            None => self.read_head("append").await?,
        };
        let attempts = self.options.max_append_attempts.max(1);
        for attempt in 1..=attempts {
            let seq = guard.head.seq + 1;
            let record = AuditRecord::seal(entry.clone(), seq, &guard.head.hash);
            let value = serde_json::to_vec(&record).expect("audit record JSON");
            if value.len() > MAX_RECORD_BYTES {
                return Err(LedgerError::InvalidEntry(format!(
                    "the record would take {} bytes, more than the {MAX_RECORD_BYTES} allowed; \
                     shorten the outcome message",
                    value.len()
                )));
            }
            let head = ChainHead {
                seq,
                hash: record.hash.clone(),
            };
            let record_key = self.keys.record(seq);
            let head_guard = if guard.mod_revision == 0 {
                Compare::version(self.keys.head(), CompareOp::Equal, 0)
            } else {
                Compare::mod_revision(self.keys.head(), CompareOp::Equal, guard.mod_revision)
            };
            let mut writes = vec![TxnOp::put(record_key.clone(), value, None)];
            if let Some(agency) = &record.target.agency {
                writes.push(TxnOp::put(self.keys.by_agency(agency, seq), "", None));
            }
            writes.push(TxnOp::put(
                self.keys.head(),
                serde_json::to_vec(&head).expect("head JSON"),
                None,
            ));
            let txn = Txn::new()
                .when([
                    head_guard,
                    // Never overwrite a record, even if the head was rolled back.
                    Compare::version(record_key.clone(), CompareOp::Equal, 0),
                ])
                .and_then(writes)
                .or_else([TxnOp::get(self.keys.head(), None)]);
            let mut kv = self.client.kv_client();
            let response = self.call("append", kv.txn(txn)).await?;
            if response.succeeded() {
                let revision = response.header().map(|h| h.revision()).unwrap_or(0);
                return Ok((
                    record,
                    GuardedHead {
                        head,
                        mod_revision: revision,
                    },
                ));
            }
            let fresh = match response.op_responses().into_iter().next() {
                Some(TxnOpResponse::Get(get)) => self.decode_head(get.kvs().first())?,
                _ => self.read_head("append").await?,
            };
            if fresh.mod_revision == guard.mod_revision {
                // The head did not move, so the other guard failed: the record we were
                // about to write already exists behind the head's back.
                return Err(LedgerError::Corrupt {
                    key: record_key,
                    reason: format!(
                        "record {seq} already exists although the head says the last record \
                         is {}: the head was rolled back or deleted",
                        guard.head.seq
                    ),
                });
            }
            tracing::debug!(
                attempt,
                lost_seq = seq,
                winner_seq = fresh.head.seq,
                "audit append lost a race to another writer; re-chaining"
            );
            guard = fresh;
            if attempt < attempts {
                tokio::time::sleep(backoff(attempt)).await;
            }
        }
        tracing::warn!(attempts, "audit append gave up after losing every race");
        Err(LedgerError::Conflict { attempts })
    }

    /// The head of the chain: the last record's seq and hash, or [`ChainHead::genesis`]
    /// (seq 0) when nothing was recorded yet.
    pub async fn head(&self) -> Result<ChainHead, LedgerError> {
        Ok(self.read_head("read head").await?.head)
    }

    /// Up to `limit` (capped at [`MAX_PAGE`]) stored records from `from_seq` on, in seq
    /// order, exactly as stored: a deleted record is simply absent, for
    /// [`crate::verify_chain`] to notice.
    pub async fn range(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, LedgerError> {
        Ok(self.range_more(from_seq, limit).await?.0)
    }

    /// [`AuditLog::range`] plus whether etcd holds more records after the last returned.
    async fn range_more(
        &self,
        from_seq: u64,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, bool), LedgerError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let options = GetOptions::new()
            .with_range(prefix_end(&self.keys.records_prefix()))
            .with_limit(limit as i64);
        let mut kv = self.client.kv_client();
        let response = self
            .call(
                "read records",
                kv.get(self.keys.record(from_seq.max(1)), Some(options)),
            )
            .await?;
        let records = response
            .kvs()
            .iter()
            .map(|kv| self.decode_record(kv))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((records, response.more()))
    }

    /// Records matching `query`, in seq order, one page at a time.
    ///
    /// Per-agency queries walk that agency's index keys and fetch the records they name
    /// in batches; other queries walk the records. Time filters are applied to what is
    /// walked (times are the API replicas' clocks and need not be monotonic in seq).
    pub async fn list(&self, query: &AuditQuery) -> Result<AuditPage, LedgerError> {
        if query.limit == 0 {
            return Err(LedgerError::InvalidQuery("limit must be at least 1".into()));
        }
        if let (Some(since), Some(until)) = (query.since, query.until)
            && since > until
        {
            return Err(LedgerError::InvalidQuery(format!(
                "since ({since}) is after until ({until})"
            )));
        }
        if let Some(agency) = &query.agency {
            validate_agency(agency).map_err(LedgerError::InvalidQuery)?;
        }
        let limit = query.limit.min(MAX_PAGE);
        let matches = |r: &AuditRecord| {
            query.since.is_none_or(|since| r.time >= since)
                && query.until.is_none_or(|until| r.time < until)
        };
        // A time filter may skip most of what it reads: read full batches then, rather
        // than `limit` records per round trip.
        let batch_size = if query.since.is_some() || query.until.is_some() {
            MAX_PAGE
        } else {
            limit
        };
        let mut records = Vec::new();
        let mut after = query.after_seq.unwrap_or(0);
        let mut examined = 0;
        loop {
            let Some(from) = after.checked_add(1) else {
                return Ok(AuditPage {
                    records,
                    next_after_seq: None,
                });
            };
            let (batch, more) = match &query.agency {
                None => self.range_more(from, batch_size).await?,
                Some(agency) => self.agency_batch(agency, from, batch_size).await?,
            };
            for (index, record) in batch.iter().enumerate() {
                after = record.seq;
                examined += 1;
                if matches(record) {
                    records.push(record.clone());
                }
                let rest = index + 1 < batch.len() || more;
                if records.len() == limit || examined >= MAX_SCAN {
                    return Ok(AuditPage {
                        records,
                        next_after_seq: rest.then_some(after),
                    });
                }
            }
            if !more || batch.is_empty() {
                return Ok(AuditPage {
                    records,
                    next_after_seq: None,
                });
            }
        }
    }

    /// Up to `limit` records of `agency` from `from_seq` on, via its index keys.
    async fn agency_batch(
        &self,
        agency: &str,
        from_seq: u64,
        limit: usize,
    ) -> Result<(Vec<AuditRecord>, bool), LedgerError> {
        let index_prefix = self.keys.by_agency_prefix(agency);
        let options = GetOptions::new()
            .with_range(prefix_end(&index_prefix))
            .with_limit(limit as i64)
            .with_keys_only();
        let mut kv = self.client.kv_client();
        let response = self
            .call(
                "read agency index",
                kv.get(self.keys.by_agency(agency, from_seq), Some(options)),
            )
            .await?;
        let seqs = response
            .kvs()
            .iter()
            .map(|kv| seq_from_key(kv.key()).ok_or_else(|| corrupt_key(kv, "not <agency>/<seq>")))
            .collect::<Result<Vec<_>, _>>()?;
        let mut records = Vec::with_capacity(seqs.len());
        for chunk in seqs.chunks(MAX_TXN_READS) {
            records.extend(self.fetch(chunk).await?);
        }
        for record in &records {
            if record.target.agency.as_deref() != Some(agency) {
                return Err(LedgerError::Corrupt {
                    key: self.keys.by_agency(agency, record.seq),
                    reason: format!(
                        "it indexes record {} under agency {agency}, but that record concerns \
                         {:?}",
                        record.seq, record.target.agency
                    ),
                });
            }
        }
        Ok((records, response.more()))
    }

    /// The records with these seqs, read in one transaction (one consistent snapshot).
    async fn fetch(&self, seqs: &[u64]) -> Result<Vec<AuditRecord>, LedgerError> {
        let reads: Vec<TxnOp> = seqs
            .iter()
            .map(|&seq| TxnOp::get(self.keys.record(seq), None))
            .collect();
        let mut kv = self.client.kv_client();
        let response = self
            .call("read records", kv.txn(Txn::new().and_then(reads)))
            .await?;
        seqs.iter()
            .zip(response.op_responses())
            .map(|(&seq, op)| match op {
                TxnOpResponse::Get(get) => match get.kvs().first() {
                    Some(kv) => self.decode_record(kv),
                    None => Err(LedgerError::Corrupt {
                        key: self.keys.record(seq),
                        reason: format!(
                            "an agency index names record {seq} but it does not exist: it was \
                             deleted"
                        ),
                    }),
                },
                _ => Err(LedgerError::Corrupt {
                    key: self.keys.record(seq),
                    reason: "etcd answered a read with something else".into(),
                }),
            })
            .collect()
    }

    /// Verifies the stored chain up to its head, `page` records per request.
    ///
    /// `from` resumes at a checkpoint `(seq, prev_hash)` from an earlier verification
    /// instead of record 1. The outer error says the log could not be read (or a record
    /// could not be decoded); the inner one says where the chain is broken.
    pub async fn verify(
        &self,
        from: Option<(u64, &str)>,
        page: usize,
    ) -> Result<Result<ChainSummary, ChainBreak>, LedgerError> {
        let head = self.head().await?;
        let mut verifier = match from {
            None => ChainVerifier::from_genesis(),
            Some((seq, prev_hash)) => ChainVerifier::resume(seq, prev_hash),
        };
        loop {
            let next = verifier.last().seq + 1;
            if next > head.seq {
                break;
            }
            let batch = self
                .range(next, page.min((head.seq - next + 1) as usize))
                .await?;
            if batch.is_empty() {
                break;
            }
            for record in batch.iter().filter(|r| r.seq <= head.seq) {
                if let Err(broken) = verifier.push(record) {
                    return Ok(Err(broken));
                }
            }
            if batch.last().is_some_and(|r| r.seq >= head.seq) {
                break;
            }
        }
        // A record past the head is either a concurrent append (the head has moved on)
        // or one written behind the head's back (the head was rolled back or deleted).
        if let Some(beyond) = self.range(head.seq + 1, 1).await?.into_iter().next()
            && self.head().await?.seq == head.seq
        {
            return Ok(Err(ChainBreak::HeadMismatch {
                head_seq: head.seq,
                head_hash: head.hash,
                last: beyond.seq,
                last_hash: beyond.hash,
            }));
        }
        Ok(verifier.finish_at(&head))
    }

    async fn read_head(&self, operation: &'static str) -> Result<GuardedHead, LedgerError> {
        let mut kv = self.client.kv_client();
        let response = self.call(operation, kv.get(self.keys.head(), None)).await?;
        self.decode_head(response.kvs().first())
    }

    fn decode_head(&self, kv: Option<&KeyValue>) -> Result<GuardedHead, LedgerError> {
        let Some(kv) = kv else {
            return Ok(GuardedHead {
                head: ChainHead::genesis(),
                mod_revision: 0,
            });
        };
        let head: ChainHead = serde_json::from_slice(kv.value())
            .map_err(|err| corrupt_key(kv, &format!("not a head: {err}")))?;
        if !super::chain::is_digest(&head.hash) {
            return Err(corrupt_key(kv, "its hash is not 64 hex digits"));
        }
        Ok(GuardedHead {
            head,
            mod_revision: kv.mod_revision(),
        })
    }

    fn decode_record(&self, kv: &KeyValue) -> Result<AuditRecord, LedgerError> {
        let key_seq =
            seq_from_key(kv.key()).ok_or_else(|| corrupt_key(kv, "not records/<20-digit seq>"))?;
        let record: AuditRecord = serde_json::from_slice(kv.value())
            .map_err(|err| corrupt_key(kv, &format!("not an audit record: {err}")))?;
        if record.seq != key_seq {
            return Err(corrupt_key(
                kv,
                &format!("it holds record {} under seq {key_seq}", record.seq),
            ));
        }
        Ok(record)
    }

    /// Runs one etcd request under the request timeout and classifies its failure.
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
}

/// The key layout (see the module documentation).
#[derive(Debug, Clone)]
struct Keys {
    prefix: String,
}

impl Keys {
    fn new(prefix: &str) -> Result<Self, LedgerError> {
        let trimmed = prefix.trim_end_matches('/');
        if !trimmed.starts_with('/') || trimmed.chars().any(char::is_control) {
            return Err(LedgerError::InvalidConfig(format!(
                "key prefix {prefix:?} must start with '/' and hold at least one more character, \
                 e.g. {DEFAULT_PREFIX}"
            )));
        }
        Ok(Self {
            prefix: trimmed.to_owned(),
        })
    }

    fn head(&self) -> String {
        format!("{}/audit/head", self.prefix)
    }

    fn records_prefix(&self) -> String {
        format!("{}/audit/records/", self.prefix)
    }

    fn record(&self, seq: u64) -> String {
        format!("{}/audit/records/{seq:020}", self.prefix)
    }

    fn by_agency_prefix(&self, agency: &str) -> String {
        format!("{}/audit/by-agency/{agency}/", self.prefix)
    }

    fn by_agency(&self, agency: &str, seq: u64) -> String {
        format!("{}/audit/by-agency/{agency}/{seq:020}", self.prefix)
    }
}

/// The smallest key after every key starting with `prefix` (which ends in `/`).
fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    // Every prefix here ends in '/', so the last byte can be incremented without carry.
    *end.last_mut().expect("non-empty prefix") += 1;
    end
}

/// The seq in the last segment of a record or index key.
fn seq_from_key(key: &[u8]) -> Option<u64> {
    let last = key.rsplit(|&b| b == b'/').next()?;
    if last.len() != 20 {
        return None;
    }
    std::str::from_utf8(last).ok()?.parse().ok()
}

fn corrupt_key(kv: &KeyValue, reason: &str) -> LedgerError {
    LedgerError::Corrupt {
        key: String::from_utf8_lossy(kv.key()).into_owned(),
        reason: reason.to_owned(),
    }
}

/// "Full jitter" backoff: a random pause up to 2 ms doubled per attempt, at most 100 ms.
/// Random so that replicas that lost the same race do not collide again in lockstep.
fn backoff(attempt: u32) -> Duration {
    let ceiling_ms = (2u64 << attempt.min(10)).min(100);
    // std's RandomState is seeded randomly per instance: enough jitter, no extra crate.
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(attempt);
    Duration::from_micros(hasher.finish() % (ceiling_ms * 1000 + 1))
}

fn validate_agency(agency: &str) -> Result<(), String> {
    if agency.is_empty() || agency.contains('/') || agency.chars().any(char::is_control) {
        return Err(format!(
            "agency {agency:?} cannot be an index key segment: it must be non-empty, without \
             '/' or control characters"
        ));
    }
    Ok(())
}

/// Checks what the chain and the key layout rely on; a failure is a bug in the caller.
fn validate_entry(entry: &AuditEntry) -> Result<(), LedgerError> {
    let invalid = |reason: String| Err(LedgerError::InvalidEntry(reason));
    if entry.method.is_empty() {
        return invalid("method is empty".into());
    }
    if entry.actor.user.is_empty() {
        return invalid("actor.user is empty; record anonymous callers by their user name, e.g. system:anonymous".into());
    }
    if entry.outcome.code.is_empty() {
        return invalid("outcome.code is empty".into());
    }
    if !super::chain::is_digest(&entry.request_digest) {
        return invalid(format!(
            "request_digest {:?} is not a lower-case hex SHA-256; use govbroker_ledger::digest",
            entry.request_digest
        ));
    }
    // The hash rule writes years with exactly four digits.
    let year = entry.time.to_zoned(jiff::tz::TimeZone::UTC).year();
    if !(1..=9999).contains(&year) {
        return invalid(format!("time {} is outside years 0001-9999", entry.time));
    }
    if let Some(agency) = &entry.target.agency {
        validate_agency(agency).or_else(invalid)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{Actor, Outcome, Target, digest};

    #[test]
    fn keys_sort_in_seq_order() {
        let keys = Keys::new("/govbroker/").unwrap();
        assert_eq!(keys.head(), "/govbroker/audit/head");
        assert_eq!(
            keys.record(42),
            "/govbroker/audit/records/00000000000000000042"
        );
        assert_eq!(
            keys.by_agency("so-tai-chinh", 7),
            "/govbroker/audit/by-agency/so-tai-chinh/00000000000000000007"
        );
        assert!(keys.record(9) < keys.record(10));
        assert!(
            keys.record(u64::MAX) < String::from_utf8(prefix_end(&keys.records_prefix())).unwrap()
        );
        assert_eq!(seq_from_key(keys.record(123).as_bytes()), Some(123));
        assert_eq!(seq_from_key(b"/govbroker/audit/head"), None);
    }

    #[test]
    fn prefix_must_be_absolute() {
        assert!(Keys::new("govbroker").is_err());
        assert!(Keys::new("/").is_err());
        assert!(Keys::new("").is_err());
        assert_eq!(Keys::new("/t-1").unwrap().prefix, "/t-1");
    }

    #[test]
    fn backoff_stays_within_its_ceiling() {
        for attempt in 1..40 {
            assert!(backoff(attempt) <= Duration::from_millis(100));
        }
        assert!(backoff(1) <= Duration::from_millis(4));
    }

    fn entry() -> AuditEntry {
        AuditEntry {
            time: "2025-03-01T08:30:00Z".parse().unwrap(),
            actor: Actor {
                user: "alice".into(),
                groups: vec![],
            },
            method: "govbroker.v1.Agencies/UpdateAgency".into(),
            target: Target {
                kind: "Agency".into(),
                name: "x".into(),
                agency: Some("x".into()),
            },
            request_digest: digest(b"{}"),
            outcome: Outcome::ok(),
        }
    }

    #[test]
    fn entries_that_would_break_keys_or_the_hash_rule_are_refused() {
        assert!(validate_entry(&entry()).is_ok());
        let cases: Vec<fn(&mut AuditEntry)> = vec![
            |e| e.target.agency = Some("a/b".into()),
            |e| e.target.agency = Some(String::new()),
            |e| e.request_digest = "abc".into(),
            |e| e.request_digest = e.request_digest.to_uppercase(),
            |e| e.method.clear(),
            |e| e.actor.user.clear(),
            |e| e.outcome.code.clear(),
            |e| e.time = "-000001-01-01T00:00:00Z".parse().unwrap(),
        ];
        for (i, change) in cases.into_iter().enumerate() {
            let mut e = entry();
            change(&mut e);
            assert!(
                matches!(validate_entry(&e), Err(LedgerError::InvalidEntry(_))),
                "case {i} accepted"
            );
        }
    }
}
