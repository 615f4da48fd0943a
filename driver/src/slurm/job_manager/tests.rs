//! The job manager's decisions against a scripted launcher: retries, requeues, reattaching
//! without submitting twice, recovering a submission cut short, and cancelling on interrupt.
//! (The same behaviour on a real Slurm is tested in `tests/slurm_cluster.rs`.)

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;

use super::*;
use crate::parallelism::strategy_by_name;
use crate::slurm::job_factory::{JobScript, LaunchMode, PromptRow};
use crate::slurm::launcher::JobStatus;

/// The states a fake job goes through, one per poll (the last one sticks), with exit codes.
type Script = Vec<(JobState, Option<i32>)>;

/// A fake cluster: each submission plays the next scripted list of states, one per poll.
#[derive(Default)]
struct FakeCluster {
    /// States per submission, in order.
    scripts: Vec<Script>,
    /// By id: the job's name, its script, and how far it has played.
    jobs: HashMap<String, (String, Script, usize)>,
    submitted: Vec<String>,
    cancelled: Vec<String>,
    next_id: u64,
}

#[derive(Clone, Default)]
struct Fake(Rc<RefCell<FakeCluster>>);

impl Fake {
    fn with(scripts: Vec<Script>) -> Self {
        let fake = Self::default();
        fake.0.borrow_mut().scripts = scripts;
        fake.0.borrow_mut().next_id = 100;
        fake
    }
    fn submitted(&self) -> Vec<String> {
        self.0.borrow().submitted.clone()
    }
}

impl Launcher for Fake {
    fn name(&self) -> &'static str {
        "fake"
    }
    fn launch_mode(&self) -> LaunchMode {
        LaunchMode::Srun
    }
    fn submit(&mut self, job: &JobScript) -> Result<String, LaunchError> {
        let mut c = self.0.borrow_mut();
        c.next_id += 1;
        let id = c.next_id.to_string();
        let script = if c.scripts.is_empty() {
            vec![(JobState::Running, None)]
        } else {
            c.scripts.remove(0)
        };
        c.jobs.insert(id.clone(), (job.job_name.clone(), script, 0));
        c.submitted.push(job.job_name.clone());
        std::fs::write(
            job.dir.join(format!("job-{id}.err")),
            "boom: injected failure\n",
        )
        .unwrap();
        Ok(id)
    }
    fn find(&mut self, job: &JobScript, _since: u64) -> Result<Option<String>, LaunchError> {
        let c = self.0.borrow();
        Ok(c.jobs
            .iter()
            .find(|(_, (name, _, _))| *name == job.job_name)
            .map(|(id, _)| id.clone()))
    }
    fn poll(
        &mut self,
        jobs: &[(&str, &JobScript)],
    ) -> Result<HashMap<String, JobStatus>, LaunchError> {
        let mut c = self.0.borrow_mut();
        let mut out = HashMap::new();
        for (id, script) in jobs {
            let Some((_, states, at)) = c.jobs.get_mut(*id) else {
                continue;
            };
            let (state, exit_code) = states[(*at).min(states.len() - 1)];
            *at += 1;
            if state == JobState::Completed {
                std::fs::write(&script.out, "{}\n").unwrap();
                std::fs::write(&script.placement, "0 node1 0\n").unwrap();
            }
            out.insert(
                id.to_string(),
                JobStatus {
                    exit_code,
                    ..JobStatus::new(state)
                },
            );
        }
        Ok(out)
    }
    fn cancel(&mut self, jobs: &[(&str, &JobScript)]) -> Result<(), LaunchError> {
        let mut c = self.0.borrow_mut();
        for (id, _) in jobs {
            c.cancelled.push(id.to_string());
            if let Some(job) = c.jobs.get_mut(*id) {
                job.1 = vec![(JobState::Cancelled, None)];
                job.2 = 0;
            }
        }
        Ok(())
    }
}

fn profile() -> ClusterProfile {
    ClusterProfile::load(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../slurm/profiles/local-ci.toml"),
    )
    .unwrap()
}

fn options() -> ManagerOptions {
    ManagerOptions {
        poll_min: Duration::from_millis(1),
        poll_max: Duration::from_millis(5),
        handle_signals: false,
        ..Default::default()
    }
}

fn prompts() -> Vec<PromptRow> {
    vec![PromptRow {
        prompt_id: "p01".into(),
        variant: "2k".into(),
        prompt: "Hi".into(),
        messages: None,
        token_budget: None,
    }]
}

fn manager(run: &Path, fake: &Fake) -> SlurmJobManager<Fake> {
    let p = profile();
    let s = strategy_by_name("tp-single-node", &p, &p.model.facts().unwrap()).unwrap();
    SlurmJobManager::open(p, run, fake.clone(), vec![s], options()).unwrap()
}

use JobState::*;

#[test]
fn a_failing_job_is_retried_up_to_max_tries_then_recorded_with_exit_code_and_log_tail() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![
        vec![(Running, None), (Failed, Some(3))],
        vec![(Failed, Some(3))],
    ]);
    let mut m = manager(run.path(), &fake);
    m.add_jobs(&prompts()).unwrap();
    let mut delivered = 0;
    let summary = m.run(|_, _| delivered += 1).unwrap();
    assert_eq!(delivered, 0);
    assert_eq!(fake.submitted().len(), 2, "max_tries = 2 in local-ci");
    let job = &summary.jobs[0];
    assert_eq!(
        (job.status, job.last_state, job.exit_code),
        (JobProgress::Failed, Some(Failed), Some(3))
    );
    assert!(
        job.why.as_deref().unwrap().contains("exit code 3"),
        "{:?}",
        job.why
    );
    let state = RunState::load(run.path()).unwrap().unwrap();
    let tail = state.jobs[0].attempts[1].log_tail.as_deref().unwrap();
    assert!(tail.contains("boom: injected failure"), "{tail}");
}

#[test]
fn a_retry_that_succeeds_delivers_once() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![
        vec![(Failed, Some(1))],
        vec![(Pending, None), (Running, None), (Completed, Some(0))],
    ]);
    let mut m = manager(run.path(), &fake);
    m.add_jobs(&prompts()).unwrap();
    let mut delivered = Vec::new();
    let summary = m
        .run(|job, a| delivered.push((job.key(), a.number)))
        .unwrap();
    assert_eq!(delivered, vec![("tp-single-node/2k".to_string(), 2)]);
    assert_eq!(summary.jobs[0].status, JobProgress::Succeeded);
}

#[test]
fn node_failures_are_requeued_and_timeouts_are_not() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![vec![(NodeFail, None)], vec![(Timeout, Some(0))]]);
    let mut m = manager(run.path(), &fake);
    m.add_jobs(&prompts()).unwrap();
    let summary = m.run(|_, _| {}).unwrap();
    let state = RunState::load(run.path()).unwrap().unwrap();
    let kinds: Vec<_> = state.jobs[0].attempts.iter().map(|a| a.kind).collect();
    assert_eq!(kinds, vec![AttemptKind::First, AttemptKind::Requeue]);
    assert_eq!(summary.jobs[0].last_state, Some(Timeout));
    assert_eq!(summary.jobs[0].status, JobProgress::Failed);
}

#[test]
fn a_reopened_run_reattaches_and_submits_nothing_twice() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![vec![(Pending, None), (Running, None)]]);
    {
        let mut m = manager(run.path(), &fake);
        m.add_jobs(&prompts()).unwrap();
        m.options.cancel_on_interrupt = false;
        let flag = m.interrupt_flag();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            flag.store(true, Ordering::SeqCst);
        });
        let err = m.run(|_, _| {}).unwrap_err();
        assert!(
            matches!(err, ManagerError::Interrupted { ref left, .. } if left.len() == 1),
            "{err}"
        );
    }
    // While the driver was away, the job finished.
    if let Some(job) = fake.0.borrow_mut().jobs.get_mut("101") {
        job.1 = vec![(Completed, Some(0))];
        job.2 = 0;
    }
    assert_eq!(fake.submitted().len(), 1);
    let mut m = manager(run.path(), &fake);
    assert_eq!(
        m.add_jobs(&prompts()).unwrap(),
        0,
        "the job is already in the run"
    );
    let mut delivered = 0;
    let summary = m.run(|_, _| delivered += 1).unwrap();
    assert_eq!((delivered, fake.submitted().len()), (1, 1));
    assert_eq!(summary.jobs[0].status, JobProgress::Succeeded);
}

#[test]
fn a_submission_cut_short_by_a_crash_is_found_by_name_not_submitted_again() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![vec![(Completed, Some(0))]]);
    {
        let mut m = manager(run.path(), &fake);
        m.add_jobs(&prompts()).unwrap();
    }
    // The driver submitted the job, then died before recording its id.
    let mut state = RunState::load(run.path()).unwrap().unwrap();
    let p = profile();
    let factory = SlurmJobFactory::new(p.clone(), run.path(), &state.run_id).unwrap();
    let s = strategy_by_name("tp-single-node", &p, &p.model.facts().unwrap()).unwrap();
    let args = s.engine_args();
    let rendered = factory
        .write(&JobRequest {
            strategy: s.name(),
            variant: "2k",
            attempt: 1,
            args: &args,
            walltime: None,
            launch: LaunchMode::Srun,
        })
        .unwrap();
    fake.clone().submit(&rendered.script).unwrap();
    state.jobs[0].attempts.push(Attempt {
        number: 1,
        kind: AttemptKind::First,
        why: "first attempt".into(),
        args,
        script: rendered.script,
        phase: Phase::Submitting,
        job_id: None,
        state: None,
        exit_code: None,
        signal: None,
        nodes: None,
        reason: None,
        log_tail: None,
        outputs_present: false,
        delivered: false,
        started_unix: now_unix(),
        ended_unix: None,
    });
    state.save(run.path()).unwrap();
    let mut m = manager(run.path(), &fake);
    let summary = m.run(|_, _| {}).unwrap();
    assert_eq!(fake.submitted().len(), 1);
    assert_eq!(summary.jobs[0].job_ids, vec!["101".to_string()]);
    assert_eq!(summary.jobs[0].status, JobProgress::Succeeded);
}

#[test]
fn an_interrupt_cancels_the_runs_own_jobs() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::with(vec![vec![(Running, None)]]);
    let mut m = manager(run.path(), &fake);
    m.add_jobs(&prompts()).unwrap();
    let flag = m.interrupt_flag();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(20));
        flag.store(true, Ordering::SeqCst);
    });
    let err = m.run(|_, _| {}).unwrap_err();
    assert!(
        matches!(err, ManagerError::Interrupted { ref cancelled, .. } if cancelled == &vec!["101".to_string()]),
        "{err}"
    );
    assert_eq!(fake.0.borrow().cancelled, vec!["101".to_string()]);
    let state = RunState::load(run.path()).unwrap().unwrap();
    assert_eq!(state.jobs[0].attempts[0].state, Some(Cancelled));
    assert_eq!(state.jobs[0].status, JobProgress::Failed);
}

#[test]
fn a_run_of_one_launcher_is_not_reattached_by_another() {
    let run = tempfile::tempdir().unwrap();
    let fake = Fake::default();
    drop(manager(run.path(), &fake));
    let p = profile();
    let s = strategy_by_name("tp-single-node", &p, &p.model.facts().unwrap()).unwrap();
    let err = SlurmJobManager::open(
        p,
        run.path(),
        crate::slurm::launcher::LocalLauncher::new(),
        vec![s],
        options(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("belong to the fake launcher"), "{err}");
}
