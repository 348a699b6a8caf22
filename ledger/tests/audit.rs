//! The audit log against the real ledger etcd of the local control plane
//! (`cargo xtask cluster up`; endpoints from `GOVBROKER_LEDGER_ENDPOINTS`, default
//! `http://127.0.0.1:12381`). Each test writes under its own prefix and deletes it at the
//! end, also when it fails (set `GOVBROKER_KEEP_TEST_STATE=1` to keep it for inspection).

use std::collections::BTreeSet;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use etcd_client::{Client, DeleteOptions, GetOptions};
use govbroker_ledger::{
    Actor, AuditEntry, AuditLog, AuditQuery, AuditRecord, ChainBreak, GENESIS_PREV_HASH,
    LedgerError, LedgerOptions, Outcome, Target, TransportError, digest, verify_chain,
};
use jiff::{SignedDuration, Timestamp};
use tokio::net::TcpListener;
use tokio::sync::Barrier;

/// `GOVBROKER_LEDGER_ENDPOINTS` (comma-separated), else `GOVBROKER_LEDGER_ETCD` (what
/// `cargo xtask cluster up` prints), else the local control plane's ledger etcd.
fn endpoints() -> Vec<String> {
    std::env::var("GOVBROKER_LEDGER_ENDPOINTS")
        .or_else(|_| std::env::var("GOVBROKER_LEDGER_ETCD"))
        .unwrap_or_else(|_| "http://127.0.0.1:12381".into())
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect()
}

/// A prefix of its own for one test, deleted when the test ends (pass or fail).
struct Scratch {
    prefix: String,
}

impl Scratch {
    fn new(test: &str) -> Self {
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self {
            prefix: format!("/govbroker-test-{test}-{random:016x}"),
        }
    }

    async fn log(&self) -> Result<AuditLog> {
        AuditLog::connect(&endpoints(), &self.prefix)
            .await
            .context("connecting to the ledger etcd (is `cargo xtask cluster up` running?)")
    }

    /// A raw etcd client, to tamper with the stored log the way an intruder would.
    async fn raw(&self) -> Result<Client> {
        Ok(Client::connect(endpoints(), None).await?)
    }

    fn key(&self, rest: &str) -> String {
        format!("{}/audit/{rest}", self.prefix)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let keep = std::env::var("GOVBROKER_KEEP_TEST_STATE").is_ok_and(|v| v == "1");
        if keep {
            eprintln!("keeping the test's keys under {}/", self.prefix);
            return;
        }
        // Drop cannot await, and the test's runtime may be shutting down: delete on a
        // thread of our own with a runtime of its own.
        let prefix = format!("{}/", self.prefix);
        let cleaned = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let mut client = Client::connect(endpoints(), None).await?;
                client
                    .delete(prefix, Some(DeleteOptions::new().with_prefix()))
                    .await?;
                anyhow::Ok(())
            })
        })
        .join();
        if !matches!(cleaned, Ok(Ok(()))) {
            eprintln!("could not delete the test's keys under {}/", self.prefix);
        }
    }
}

fn base_time() -> Timestamp {
    "2025-03-01T08:00:00.123456789Z".parse().unwrap()
}

/// The i-th entry of a test: a minute apart, agencies and outcomes varied.
fn entry(i: u64, agency: Option<&str>, user: &str) -> AuditEntry {
    AuditEntry {
        time: base_time() + SignedDuration::from_mins(i as i64),
        actor: Actor {
            user: user.into(),
            groups: vec![
                "govbroker:agency-admins".into(),
                "system:authenticated".into(),
            ],
        },
        method: "govbroker.v1.Agencies/UpdateAgency".into(),
        target: Target {
            kind: "Agency".into(),
            name: agency.unwrap_or("bo-noi-vu").into(),
            agency: agency.map(Into::into),
        },
        request_digest: digest(format!("request {i} by {user}").as_bytes()),
        outcome: if i.is_multiple_of(4) {
            Outcome {
                code: "permission_denied".into(),
                message: format!("{user} may not update agencies"),
            }
        } else {
            Outcome::ok()
        },
    }
}

const AGENCIES: [Option<&str>; 3] = [Some("so-tai-chinh"), Some("ubnd-ha-noi"), None];

fn seqs(records: &[AuditRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

async fn all_pages(log: &AuditLog, mut query: AuditQuery) -> Result<Vec<Vec<u64>>> {
    let mut pages = Vec::new();
    for _ in 0..100 {
        let page = log.list(&query).await?;
        pages.push(seqs(&page.records));
        match page.next_after_seq {
            Some(after) => query.after_seq = Some(after),
            None => return Ok(pages),
        }
    }
    bail!("paging did not end after 100 pages")
}

#[tokio::test]
async fn append_then_list_all_by_agency_by_time_and_in_pages() -> Result<()> {
    let scratch = Scratch::new("list");
    let log = scratch.log().await?;
    assert_eq!(log.head().await?.seq, 0, "a fresh prefix starts empty");

    let mut appended = Vec::new();
    for i in 0..12u64 {
        let agency = AGENCIES[i as usize % 3];
        let record = log.append(entry(i, agency, "alice")).await?;
        appended.push(record);
    }
    assert_eq!(seqs(&appended), (1..=12).collect::<Vec<_>>());
    assert_eq!(appended[0].prev_hash, GENESIS_PREV_HASH);
    for pair in appended.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    let head = log.head().await?;
    assert_eq!((head.seq, &head.hash), (12, &appended[11].hash));

    // Everything, in one page.
    let all = log.list(&AuditQuery::default()).await?;
    assert_eq!(all.records, appended);
    assert_eq!(all.next_after_seq, None);

    // By agency, through the index.
    let tai_chinh = AuditQuery {
        agency: Some("so-tai-chinh".into()),
        ..AuditQuery::default()
    };
    let page = log.list(&tai_chinh).await?;
    assert_eq!(seqs(&page.records), vec![1, 4, 7, 10]);
    assert!(
        page.records
            .iter()
            .all(|r| r.target.agency.as_deref() == Some("so-tai-chinh"))
    );
    let nobody = AuditQuery {
        agency: Some("khong-ton-tai".into()),
        ..AuditQuery::default()
    };
    assert!(log.list(&nobody).await?.records.is_empty());

    // By time: since is inclusive, until exclusive (entry i is at minute i, seq i + 1).
    let window = AuditQuery {
        since: Some(base_time() + SignedDuration::from_mins(3)),
        until: Some(base_time() + SignedDuration::from_mins(7)),
        ..AuditQuery::default()
    };
    assert_eq!(seqs(&log.list(&window).await?.records), vec![4, 5, 6, 7]);
    let window_in_agency = AuditQuery {
        agency: Some("so-tai-chinh".into()),
        ..window.clone()
    };
    assert_eq!(
        seqs(&log.list(&window_in_agency).await?.records),
        vec![4, 7]
    );

    // Paging: the pages join up to the whole log, and the last says there is no more.
    let paged = AuditQuery {
        limit: 5,
        ..AuditQuery::default()
    };
    assert_eq!(
        all_pages(&log, paged).await?,
        vec![vec![1, 2, 3, 4, 5], vec![6, 7, 8, 9, 10], vec![11, 12]]
    );
    let paged_in_agency = AuditQuery {
        limit: 2,
        ..tai_chinh.clone()
    };
    assert_eq!(
        all_pages(&log, paged_in_agency).await?,
        vec![vec![1, 4], vec![7, 10]]
    );
    let paged_window = AuditQuery { limit: 3, ..window };
    assert_eq!(
        all_pages(&log, paged_window).await?.concat(),
        vec![4, 5, 6, 7]
    );

    let past_the_end = AuditQuery {
        after_seq: Some(u64::MAX),
        ..AuditQuery::default()
    };
    let page = log.list(&past_the_end).await?;
    assert!(page.records.is_empty() && page.next_after_seq.is_none());

    // Limits: 0 is refused, anything large is capped.
    let zero = AuditQuery {
        limit: 0,
        ..AuditQuery::default()
    };
    assert!(matches!(
        log.list(&zero).await,
        Err(LedgerError::InvalidQuery(_))
    ));
    let huge = AuditQuery {
        limit: usize::MAX,
        ..AuditQuery::default()
    };
    assert_eq!(log.list(&huge).await?.records.len(), 12);

    // Range, for verification in pages.
    assert_eq!(seqs(&log.range(4, 3).await?), vec![4, 5, 6]);
    assert_eq!(seqs(&log.range(11, 100).await?), vec![11, 12]);
    assert!(log.range(13, 100).await?.is_empty());
    let summary = log
        .verify(None, 5)
        .await?
        .map_err(|broken| anyhow::anyhow!("{broken}"))?;
    assert_eq!(summary.verified, 12);

    // The documented key layout, read raw.
    let mut raw = scratch.raw().await?;
    let stored = raw
        .get(scratch.key("records/00000000000000000001"), None)
        .await?;
    let stored: AuditRecord = serde_json::from_slice(stored.kvs()[0].value())?;
    assert_eq!(stored, appended[0]);
    let head_json = raw.get(scratch.key("head"), None).await?;
    let head_json: serde_json::Value = serde_json::from_slice(head_json.kvs()[0].value())?;
    assert_eq!(
        head_json,
        serde_json::json!({ "seq": 12, "hash": appended[11].hash })
    );
    let index = raw
        .get(
            scratch.key("by-agency/ubnd-ha-noi/"),
            Some(GetOptions::new().with_prefix()),
        )
        .await?;
    let index_keys: Vec<_> = index
        .kvs()
        .iter()
        .map(|kv| (kv.key_str().unwrap().to_owned(), kv.value().len()))
        .collect();
    assert_eq!(
        index_keys,
        [2, 5, 8, 11]
            .iter()
            .map(|seq| (scratch.key(&format!("by-agency/ubnd-ha-noi/{seq:020}")), 0))
            .collect::<Vec<_>>()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_make_one_gap_free_chain() -> Result<()> {
    const WRITERS: u64 = 4;
    const EACH: u64 = 20;
    let scratch = Scratch::new("concurrent");
    // Every writer connects on its own, as separate API replicas would.
    let mut logs = Vec::new();
    for _ in 0..WRITERS {
        logs.push(scratch.log().await?);
    }
    let start = Arc::new(Barrier::new(WRITERS as usize));
    let mut writers = Vec::new();
    for (w, log) in logs.into_iter().enumerate() {
        let start = start.clone();
        writers.push(tokio::spawn(async move {
            start.wait().await;
            let mut mine = Vec::new();
            for i in 0..EACH {
                let agency = AGENCIES[(i as usize + w) % 3];
                mine.push(log.append(entry(i, agency, &format!("writer-{w}"))).await?);
            }
            anyhow::Ok(mine)
        }));
    }
    let mut appended = Vec::new();
    for writer in writers {
        appended.extend(writer.await??);
    }

    let total = WRITERS * EACH;
    let distinct: BTreeSet<u64> = appended.iter().map(|r| r.seq).collect();
    assert_eq!(
        distinct,
        (1..=total).collect(),
        "every append got its own seq"
    );

    let log = scratch.log().await?;
    let stored = log.range(1, 1000).await?;
    assert_eq!(seqs(&stored), (1..=total).collect::<Vec<_>>());
    let summary = verify_chain(&stored, None)?;
    assert_eq!(summary.verified, total);
    assert_eq!(summary.last, log.head().await?);
    // What each writer was told it wrote is what is stored.
    appended.sort_by_key(|r| r.seq);
    assert_eq!(appended, stored);

    // Clones of one connection share it and serialise their appends.
    let shared = log.clone();
    let more: Vec<_> = (0..8)
        .map(|i| {
            let log = shared.clone();
            tokio::spawn(async move { log.append(entry(i, None, "shared")).await })
        })
        .collect();
    for task in more {
        task.await??;
    }
    let stored = log.range(1, 1000).await?;
    assert_eq!(verify_chain(&stored, None)?.verified, total + 8);
    Ok(())
}

#[tokio::test]
async fn tampering_is_reported_at_the_right_seq() -> Result<()> {
    let scratch = Scratch::new("tamper");
    let log = scratch.log().await?;
    for i in 0..6u64 {
        log.append(entry(i, AGENCIES[i as usize % 3], "alice"))
            .await?;
    }
    let mut raw = scratch.raw().await?;
    let verdict = |records: Vec<AuditRecord>| verify_chain(&records, None);

    // Record 3 recorded a successful call; rewrite it as denied.
    let key3 = scratch.key("records/00000000000000000003");
    let stored3 = raw.get(key3.clone(), None).await?;
    // Records are written once: version 1 (docs/audit.md uses this for forensics).
    assert_eq!(stored3.kvs()[0].version(), 1);
    let original = stored3.kvs()[0].value().to_vec();
    let mut forged: serde_json::Value = serde_json::from_slice(&original)?;
    forged["outcome"] = serde_json::json!({ "code": "permission_denied", "message": "" });
    raw.put(key3.clone(), serde_json::to_vec(&forged)?, None)
        .await?;
    let broken = verdict(log.range(1, 100).await?).unwrap_err();
    assert!(
        matches!(broken, ChainBreak::Altered { seq: 3, .. }),
        "{broken}"
    );
    assert!(
        broken.to_string().contains("record 3 was altered"),
        "{broken}"
    );
    assert_eq!(log.verify(None, 2).await?.unwrap_err(), broken);
    assert_eq!(raw.get(key3.clone(), None).await?.kvs()[0].version(), 2);

    // Put it back: the chain verifies again.
    raw.put(key3.clone(), original, None).await?;
    assert_eq!(verdict(log.range(1, 100).await?)?.verified, 6);

    // Delete record 5: a gap at 5.
    raw.delete(scratch.key("records/00000000000000000005"), None)
        .await?;
    let broken = verdict(log.range(1, 100).await?).unwrap_err();
    assert_eq!(
        broken,
        ChainBreak::Missing {
            expected: 5,
            found: 6
        }
    );
    assert_eq!(log.verify(None, 100).await?.unwrap_err(), broken);
    // Record 5 was in the index of ubnd-ha-noi: listing that agency says so.
    let ha_noi = AuditQuery {
        agency: Some("ubnd-ha-noi".into()),
        ..AuditQuery::default()
    };
    match log.list(&ha_noi).await {
        Err(LedgerError::Corrupt { key, .. }) => {
            assert_eq!(key, scratch.key("records/00000000000000000005"));
        }
        other => bail!("listing an agency whose record was deleted: {other:?}"),
    }

    // Delete the last record too: the records left still chain, only the head can tell.
    raw.delete(scratch.key("records/00000000000000000006"), None)
        .await?;
    let left = log.range(1, 100).await?;
    assert_eq!(seqs(&left), vec![1, 2, 3, 4]);
    assert_eq!(verify_chain(&left, None)?.verified, 4);
    assert_eq!(
        log.verify(None, 100).await?.unwrap_err(),
        ChainBreak::Truncated {
            last: 4,
            head_seq: 6
        }
    );

    // A record that is not JSON at all is reported by key.
    let key2 = scratch.key("records/00000000000000000002");
    raw.put(key2.clone(), "{not json", None).await?;
    match log.range(1, 100).await {
        Err(LedgerError::Corrupt { key, .. }) => assert_eq!(key, key2),
        other => bail!("reading an undecodable record: {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn unreachable_etcd_is_unavailable_within_seconds() -> Result<()> {
    // Nothing listens on port 1: connection refused.
    let started = Instant::now();
    let refused = tokio::time::timeout(
        Duration::from_secs(10),
        AuditLog::connect(
            &["http://127.0.0.1:1".into()],
            "/govbroker-test-unreachable",
        ),
    )
    .await
    .context("connect hung for 10 s")?;
    match refused {
        Err(err @ LedgerError::Unavailable { .. }) => {
            let message = err.to_string();
            ensure!(message.contains("127.0.0.1:1"), "{message}");
            ensure!(message.contains("retry"), "{message}");
            ensure!(err.is_retryable());
        }
        other => bail!("expected Unavailable, got {other:?}"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );

    // Something accepts connections but never answers (a hung etcd): the request
    // timeout must end the wait.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let hung = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let started = Instant::now();
    let options = LedgerOptions {
        request_timeout: Duration::from_secs(1),
        ..LedgerOptions::default()
    };
    let silent = tokio::time::timeout(
        Duration::from_secs(10),
        AuditLog::connect_with(
            &[format!("http://{address}")],
            "/govbroker-test-hung",
            options,
        ),
    )
    .await
    .context("connect to a silent endpoint hung for 10 s")?;
    hung.abort();
    match silent {
        Err(LedgerError::Unavailable {
            endpoints, source, ..
        }) => {
            ensure!(endpoints.contains(&address.to_string()), "{endpoints}");
            ensure!(
                matches!(
                    source,
                    TransportError::TimedOut { .. } | TransportError::Etcd(_)
                ),
                "{source}"
            );
        }
        other => bail!("expected Unavailable, got {other:?}"),
    }
    ensure!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}

/// An API replica whose etcd goes away mid-flight gets `Unavailable` quickly, not a hang.
#[tokio::test]
async fn etcd_lost_after_connecting_is_unavailable_within_seconds() -> Result<()> {
    let scratch = Scratch::new("lost");
    let upstream = endpoints()[0].trim_start_matches("http://").to_owned();
    // A loopback proxy to the real etcd, which the test can cut.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    let proxy = tokio::spawn(async move {
        let mut links = tokio::task::JoinSet::new();
        while let Ok((mut inbound, _)) = listener.accept().await {
            let upstream = upstream.clone();
            links.spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(upstream).await?;
                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await?;
                std::io::Result::Ok(())
            });
        }
    });
    let log = AuditLog::connect(&[format!("http://{address}")], &scratch.prefix).await?;
    log.append(entry(0, Some("so-tai-chinh"), "alice")).await?;

    // Cut it: aborting the proxy task drops the listener and every forwarded link.
    proxy.abort();
    let _ = proxy.await;
    let started = Instant::now();
    let result = tokio::time::timeout(Duration::from_secs(10), log.append(entry(1, None, "alice")))
        .await
        .context("append hung for 10 s after etcd went away")?;
    ensure!(
        matches!(result, Err(LedgerError::Unavailable { .. })),
        "expected Unavailable, got {result:?}"
    );
    ensure!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    Ok(())
}
