//! `kill -9` of `driver baseline` in the middle of a run, then the same command again: no row that
//! was `ok` is sent again, none is lost, and the table is never seen truncated.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::fault_server::{Fault, FaultServer};
use driver::data::table::{PromptTable, RowStatus};

#[test]
fn a_killed_run_resumes_without_resending_ok_rows_or_losing_any() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    // Every answer takes 300 ms: with two in flight a whole run takes about 6 s.
    let server = FaultServer::start(
        &runtime,
        common::prompt_keys(),
        None,
        Arc::new(|_: &str, _| Fault::Slow(Duration::from_millis(300))),
    );
    let dir = tempfile::tempdir().unwrap();
    let results = dir.path().join("results");
    let table_path = results.join("baseline_prompts.parquet");
    let config = common::write_config(
        dir.path(),
        &server.base_url(),
        &results,
        "model = \"m\"\nconcurrency = 2\nrequests_per_minute = 0\nmax_tokens = 8\n",
    );
    let run = || {
        common::driver()
            .args(["baseline", "--no-progress", "--config"])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };

    // A reader that keeps loading the table while the driver writes it: every read must parse.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, bad_reads) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let reader = {
        let (stop, reads, bad_reads, path) = (
            Arc::clone(&stop),
            Arc::clone(&reads),
            Arc::clone(&bad_reads),
            table_path.clone(),
        );
        std::thread::spawn(move || {
            while !stop.load(Ordering::SeqCst) {
                if path.exists() {
                    match PromptTable::read_parquet(&path) {
                        Ok(t) if t.rows.len() == 40 => reads.fetch_add(1, Ordering::SeqCst),
                        _ => bad_reads.fetch_add(1, Ordering::SeqCst),
                    };
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };

    let mut first = run();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ok = PromptTable::read_parquet(&table_path)
            .map(|t| t.count(RowStatus::Ok))
            .unwrap_or(0);
        if ok >= 8 {
            break;
        }
        assert!(
            first.try_wait().unwrap().is_none(),
            "the run ended before it was killed"
        );
        assert!(Instant::now() < deadline, "no progress within 60 s");
        std::thread::sleep(Duration::from_millis(20));
    }
    first.kill().unwrap(); // SIGKILL
    first.wait().unwrap();
    let requests_before = server.seen().len();
    let at_kill = PromptTable::read_parquet(&table_path).expect("the table survives kill -9");
    let ok_at_kill: HashMap<String, Option<String>> = at_kill
        .rows
        .iter()
        .filter(|r| r.status == RowStatus::Ok)
        .map(|r| (r.key(), r.local_completion.clone()))
        .collect();
    assert!(
        ok_at_kill.len() >= 8 && ok_at_kill.len() < 40,
        "{}",
        ok_at_kill.len()
    );

    let status = run().wait().unwrap();
    assert!(status.success());
    stop.store(true, Ordering::SeqCst);
    reader.join().unwrap();

    let resent: HashSet<String> = server.seen()[requests_before..]
        .iter()
        .map(|s| s.row.clone())
        .filter(|row| ok_at_kill.contains_key(row))
        .collect();
    assert!(resent.is_empty(), "ok rows sent again: {resent:?}");

    let table = PromptTable::read_parquet(&table_path).unwrap();
    assert_eq!(table.rows.len(), 40);
    for row in &table.rows {
        assert_eq!(row.status, RowStatus::Ok, "{}", row.key());
        assert_eq!(
            row.local_completion.as_deref(),
            Some(format!("answer to {}", row.key()).as_str())
        );
        if let Some(before) = ok_at_kill.get(&row.key()) {
            assert_eq!(&row.local_completion, before, "{} changed", row.key());
        }
    }
    assert_eq!(
        bad_reads.load(Ordering::SeqCst),
        0,
        "a reader saw a partial table"
    );
    assert!(reads.load(Ordering::SeqCst) > 10);
    // Nothing but the table is left in the results folder (no stray temp files).
    let names: Vec<_> = common::files_under(&results);
    assert_eq!(names, vec![table_path.clone()]);
}
