//! In-process backend for unit tests: the ranks of a job are threads of one process.
//!
//! Every operation is stricter than MPI requires, so that a schedule that passes here cannot
//! deadlock under MPI at real message sizes: a `send` returns only once the receiver has taken
//! the message (like `MPI_Ssend`), and every rank of a collective must call the same operation
//! with the same length (a mismatch is an error on every rank, not a wrong answer). A rank that
//! waits longer than the job's timeout, or whose peer thread panicked, gets an error instead of
//! hanging the test.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::comm::{Communicator, DistError, HalfFormat};
use super::context::DistContext;
use super::topology::Topology;

/// How long a local rank waits for its peers before its operation fails.
pub const LOCAL_TIMEOUT: Duration = Duration::from_secs(60);

/// The shared state of one group of `size` ranks (the world, or one stage's TP group).
pub struct LocalGroup {
    size: usize,
    name: String,
    timeout: Duration,
    state: Mutex<GroupState>,
    changed: Condvar,
}

struct GroupState {
    /// Completed collectives; a rank waits for this to move past the step it joined.
    generation: u64,
    /// One entry per rank that has joined the current collective.
    arrived: Vec<Option<Contribution>>,
    /// The last completed collective's outcome, read by each rank before it can join the next.
    outcome: Result<Arc<Payload>, String>,
    /// `mailboxes[src * size + dst]`: messages in flight from `src` to `dst`, oldest first.
    mailboxes: Vec<Mailbox>,
    /// Set when a rank's thread panicked: everyone else fails fast.
    broken: Option<String>,
}

struct Contribution {
    op: &'static str,
    /// The buffer length, or the broadcast root: must agree across ranks.
    shape: usize,
    payload: Payload,
}

/// A rank's contribution to a collective, its outcome, or a message.
enum Payload {
    F32(Vec<f32>),
    Half(Vec<u16>, HalfFormat),
    Bytes(Vec<u8>),
    None,
}

#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Payload>,
    /// Messages received so far: a sender waits for this to pass its message's number.
    taken: u64,
}

impl LocalGroup {
    /// A group of `size` ranks named `name` ("world", "tp[stage 1]"), with [`LOCAL_TIMEOUT`].
    pub fn new(size: usize, name: impl Into<String>) -> Arc<Self> {
        Self::with_timeout(size, name, LOCAL_TIMEOUT)
    }

    /// A group whose blocking operations fail after `timeout` instead of waiting forever.
    pub fn with_timeout(size: usize, name: impl Into<String>, timeout: Duration) -> Arc<Self> {
        assert!(size > 0, "a local group needs at least one rank");
        Arc::new(Self {
            size,
            name: name.into(),
            timeout,
            state: Mutex::new(GroupState {
                generation: 0,
                arrived: (0..size).map(|_| None).collect(),
                outcome: Ok(Arc::new(Payload::None)),
                mailboxes: (0..size * size).map(|_| Mailbox::default()).collect(),
                broken: None,
            }),
            changed: Condvar::new(),
        })
    }

    /// Rank `rank`'s handle on this group (one per thread).
    pub fn communicator(self: &Arc<Self>, rank: usize) -> LocalCommunicator {
        assert!(
            rank < self.size,
            "rank {rank} outside local group {} of {}",
            self.name,
            self.size
        );
        LocalCommunicator {
            group: Arc::clone(self),
            rank,
        }
    }
}

/// One rank's handle on a [`LocalGroup`]; `Send`, so it can be built before the thread starts.
pub struct LocalCommunicator {
    group: Arc<LocalGroup>,
    rank: usize,
}

impl LocalCommunicator {
    fn error(&self, op: &'static str, message: impl Into<String>) -> DistError {
        DistError {
            op,
            group: self.group.name.clone(),
            rank: self.rank,
            size: self.group.size,
            message: message.into(),
        }
    }

    fn lock(&self, op: &'static str) -> Result<MutexGuard<'_, GroupState>, DistError> {
        let state = self
            .group
            .state
            .lock()
            .map_err(|_| self.error(op, "group state poisoned by a panicking rank"))?;
        match &state.broken {
            Some(why) => Err(self.error(op, why.clone())),
            None => Ok(state),
        }
    }

    /// Waits on the group's condition variable until `done` holds, the group breaks, or the
    /// timeout passes (`waiting_for` says what was still missing, for the error).
    fn wait_until<'a>(
        &self,
        op: &'static str,
        mut state: MutexGuard<'a, GroupState>,
        waiting_for: impl Fn(&GroupState) -> String,
        mut done: impl FnMut(&mut GroupState) -> bool,
    ) -> Result<MutexGuard<'a, GroupState>, DistError> {
        let deadline = Instant::now() + self.group.timeout;
        loop {
            if let Some(why) = &state.broken {
                return Err(self.error(op, why.clone()));
            }
            if done(&mut state) {
                return Ok(state);
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(self.error(
                    op,
                    format!(
                        "timed out after {:.1} s waiting for {}",
                        self.group.timeout.as_secs_f64(),
                        waiting_for(&state)
                    ),
                ));
            }
            state = self
                .group
                .changed
                .wait_timeout(state, deadline - now)
                .map_err(|_| self.error(op, "group state poisoned by a panicking rank"))?
                .0;
        }
    }

    /// Joins the current collective with `contribution` and returns its outcome once every rank
    /// has joined; the last rank to arrive computes it.
    fn collective(
        &self,
        op: &'static str,
        shape: usize,
        payload: Payload,
    ) -> Result<Arc<Payload>, DistError> {
        let mut state = self.lock(op)?;
        let generation = state.generation;
        state.arrived[self.rank] = Some(Contribution { op, shape, payload });
        if state.arrived.iter().all(Option::is_some) {
            let arrived: Vec<Contribution> =
                state.arrived.iter_mut().flat_map(Option::take).collect();
            state.outcome = combine(arrived).map(Arc::new);
            state.generation += 1;
            self.group.changed.notify_all();
        } else {
            state = self.wait_until(op, state, missing_ranks, |s| s.generation != generation)?;
        }
        state
            .outcome
            .clone()
            .map_err(|message| self.error(op, message))
    }

    fn send_payload(
        &self,
        op: &'static str,
        dest: usize,
        payload: Payload,
    ) -> Result<(), DistError> {
        self.check_peer(op, dest)?;
        let index = self.rank * self.group.size + dest;
        let mut state = self.lock(op)?;
        let mailbox = &mut state.mailboxes[index];
        mailbox.queue.push_back(payload);
        let ticket = mailbox.taken + mailbox.queue.len() as u64;
        self.group.changed.notify_all();
        let waiting_for = |_: &GroupState| format!("rank {dest} to receive");
        self.wait_until(op, state, waiting_for, |s| {
            s.mailboxes[index].taken >= ticket
        })
        .map(drop)
    }

    fn recv_payload(&self, op: &'static str, src: usize) -> Result<Payload, DistError> {
        self.check_peer(op, src)?;
        let index = src * self.group.size + self.rank;
        let state = self.lock(op)?;
        let waiting_for = |_: &GroupState| format!("a message from rank {src}");
        let mut state = self.wait_until(op, state, waiting_for, |s| {
            !s.mailboxes[index].queue.is_empty()
        })?;
        let mailbox = &mut state.mailboxes[index];
        let payload = mailbox.queue.pop_front().unwrap_or(Payload::None);
        mailbox.taken += 1;
        self.group.changed.notify_all();
        Ok(payload)
    }

    fn check_peer(&self, op: &'static str, peer: usize) -> Result<(), DistError> {
        if peer >= self.group.size {
            return Err(self.error(op, format!("peer rank {peer} outside the group")));
        }
        if peer == self.rank {
            return Err(self.error(op, "a rank cannot send to or receive from itself"));
        }
        Ok(())
    }
}

/// "ranks 1, 3 to join": who has not reached the current collective.
fn missing_ranks(state: &GroupState) -> String {
    let missing: Vec<String> = (state.arrived.iter().enumerate())
        .filter(|(_, c)| c.is_none())
        .map(|(rank, _)| rank.to_string())
        .collect();
    let plural = if missing.len() == 1 { "" } else { "s" };
    format!("rank{plural} {} to join", missing.join(", "))
}

/// The outcome of one collective step from every rank's contribution, in rank order.
fn combine(arrived: Vec<Contribution>) -> Result<Payload, String> {
    let first = &arrived[0];
    let (op, shape) = (first.op, first.shape);
    if let Some((rank, other)) = arrived
        .iter()
        .enumerate()
        .find(|(_, c)| c.op != op || c.shape != shape)
    {
        return Err(format!(
            "ranks disagree on the collective: rank 0 called {op} ({shape}), rank {rank} called {} ({})",
            other.op, other.shape
        ));
    }
    Ok(match op {
        "all_reduce_sum" => {
            let mut sum = vec![0.0f32; shape];
            for contribution in &arrived {
                if let Payload::F32(data) = &contribution.payload {
                    sum.iter_mut().zip(data).for_each(|(s, x)| *s += x);
                }
            }
            Payload::F32(sum)
        }
        // Summed in rank order, rounding to the format after every add.
        "all_reduce_sum_half" => {
            let mut parts = arrived.iter().map(|c| match &c.payload {
                Payload::Half(data, format) => Some((data, *format)),
                _ => None,
            });
            match parts.next().flatten() {
                Some((first, format)) => {
                    let mut sum = first.clone();
                    for (data, _) in parts.flatten() {
                        format.accumulate(&mut sum, data);
                    }
                    Payload::Half(sum, format)
                }
                None => return Err("half all-reduce without data".into()),
            }
        }
        "all_gather" => Payload::F32(
            arrived
                .iter()
                .flat_map(|c| match &c.payload {
                    Payload::F32(data) => data.as_slice(),
                    _ => &[],
                })
                .copied()
                .collect(),
        ),
        "broadcast_bytes" => match arrived.into_iter().nth(shape).map(|c| c.payload) {
            Some(Payload::Bytes(data)) => Payload::Bytes(data),
            _ => return Err(format!("broadcast root {shape} gave no bytes")),
        },
        _ => Payload::None,
    })
}

impl Drop for LocalCommunicator {
    /// A rank whose thread panics breaks its groups, so its peers fail now instead of timing out.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut state = match self.group.state.lock() {
                Ok(state) => state,
                Err(poisoned) => poisoned.into_inner(),
            };
            state.broken.get_or_insert_with(|| {
                format!("rank {} of {} panicked", self.rank, self.group.name)
            });
            self.group.changed.notify_all();
        }
    }
}

impl Communicator for LocalCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.group.size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        let op = "all_reduce_sum";
        match &*self.collective(op, data.len(), Payload::F32(data.to_vec()))? {
            Payload::F32(sum) => data.copy_from_slice(sum),
            _ => return Err(self.error(op, "internal: wrong outcome kind")),
        }
        Ok(())
    }

    fn all_reduce_sum_half(&self, data: &mut [u16], format: HalfFormat) -> Result<(), DistError> {
        let op = "all_reduce_sum_half";
        match &*self.collective(op, data.len(), Payload::Half(data.to_vec(), format))? {
            Payload::Half(sum, _) => data.copy_from_slice(sum),
            _ => return Err(self.error(op, "internal: wrong outcome kind")),
        }
        Ok(())
    }

    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError> {
        let op = "all_gather";
        match &*self.collective(op, data.len(), Payload::F32(data.to_vec()))? {
            Payload::F32(all) => Ok(all.clone()),
            _ => Err(self.error(op, "internal: wrong outcome kind")),
        }
    }

    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError> {
        let op = "broadcast_bytes";
        if root >= self.group.size {
            return Err(self.error(op, format!("root {root} outside the group")));
        }
        let payload = if self.rank == root {
            Payload::Bytes(data.clone())
        } else {
            Payload::None
        };
        match &*self.collective(op, root, payload)? {
            Payload::Bytes(bytes) => {
                if self.rank != root {
                    data.clone_from(bytes);
                }
                Ok(())
            }
            _ => Err(self.error(op, "internal: wrong outcome kind")),
        }
    }

    fn send(&self, dest: usize, data: &[f32]) -> Result<(), DistError> {
        self.send_payload("send", dest, Payload::F32(data.to_vec()))
    }

    fn recv(&self, src: usize, data: &mut [f32]) -> Result<(), DistError> {
        let op = "recv";
        match self.recv_payload(op, src)? {
            Payload::F32(sent) if sent.len() == data.len() => {
                data.copy_from_slice(&sent);
                Ok(())
            }
            Payload::F32(sent) => Err(self.error(
                op,
                format!(
                    "rank {src} sent {} f32 values, the receive expects {}",
                    sent.len(),
                    data.len()
                ),
            )),
            _ => Err(self.error(
                op,
                format!("rank {src} sent bytes, the receive expects f32 values"),
            )),
        }
    }

    fn send_bytes(&self, dest: usize, data: &[u8]) -> Result<(), DistError> {
        self.send_payload("send_bytes", dest, Payload::Bytes(data.to_vec()))
    }

    fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError> {
        let op = "recv_bytes";
        match self.recv_payload(op, src)? {
            Payload::Bytes(bytes) => Ok(bytes),
            _ => Err(self.error(
                op,
                format!("rank {src} sent f32 values, the receive expects bytes"),
            )),
        }
    }

    fn barrier(&self) -> Result<(), DistError> {
        self.collective("barrier", 0, Payload::None).map(drop)
    }

    fn name(&self) -> &str {
        &self.group.name
    }
}

/// The groups of a `tp x pp` job run as threads: the world and one TP group per stage.
/// Cheap to clone; each rank's thread calls [`LocalJob::context`] (or use [`LocalJob::run`]).
#[derive(Clone)]
pub struct LocalJob {
    tp: usize,
    pp: usize,
    world: Arc<LocalGroup>,
    tp_groups: Vec<Arc<LocalGroup>>,
}

impl LocalJob {
    /// A job of `tp * pp` ranks whose operations time out after [`LOCAL_TIMEOUT`].
    pub fn new(tp: usize, pp: usize) -> Self {
        Self::with_timeout(tp, pp, LOCAL_TIMEOUT)
    }

    /// A job whose blocking operations fail after `timeout`.
    pub fn with_timeout(tp: usize, pp: usize, timeout: Duration) -> Self {
        assert!(
            tp > 0 && pp > 0,
            "--tp {tp} --pp {pp}: both must be at least 1"
        );
        Self {
            tp,
            pp,
            world: LocalGroup::with_timeout(tp * pp, "world", timeout),
            tp_groups: (0..pp)
                .map(|stage| LocalGroup::with_timeout(tp, format!("tp[stage {stage}]"), timeout))
                .collect(),
        }
    }

    pub fn world_size(&self) -> usize {
        self.tp * self.pp
    }

    /// Rank `rank`'s context (TP innermost, as under MPI); panics if `rank` is outside the job.
    pub fn context(&self, rank: usize) -> DistContext {
        let topology = Topology::new(self.tp, self.pp, self.world_size(), rank, rank)
            .unwrap_or_else(|e| panic!("local job rank {rank}: {e}"));
        DistContext {
            topology,
            world: Box::new(self.world.communicator(rank)),
            tp_group: Box::new(self.tp_groups[topology.stage()].communicator(topology.tp_rank())),
        }
    }

    /// Runs `f` on every rank, each on its own thread, and returns the results in rank order;
    /// a panic on any rank is re-raised here once all threads have ended.
    pub fn run<T: Send>(&self, f: impl Fn(DistContext) -> T + Sync) -> Vec<T> {
        std::thread::scope(|scope| {
            let handles: Vec<_> = (0..self.world_size())
                .map(|rank| {
                    let f = &f;
                    std::thread::Builder::new()
                        .name(format!("rank {rank}"))
                        .spawn_scoped(scope, move || f(self.context(rank)))
                        .unwrap_or_else(|e| panic!("spawning the thread of rank {rank}: {e}"))
                })
                .collect();
            let mut results = Vec::with_capacity(handles.len());
            let mut first_panic = None;
            for handle in handles {
                match handle.join() {
                    Ok(result) => results.push(result),
                    Err(payload) => {
                        first_panic.get_or_insert(payload);
                    }
                }
            }
            if let Some(payload) = first_panic {
                std::panic::resume_unwind(payload);
            }
            results
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}

    #[test]
    fn communicator_and_job_are_send() {
        assert_send::<LocalCommunicator>();
        assert_send::<LocalJob>();
    }

    #[test]
    fn all_reduce_sum_adds_every_rank() {
        let sums = LocalJob::new(4, 1).run(|ctx| {
            let r = ctx.world.rank() as f32;
            let mut data = vec![r, 10.0 * r, 1.0];
            ctx.world.all_reduce_sum(&mut data).unwrap();
            // A second step reuses the slots.
            let mut again = vec![r];
            ctx.world.all_reduce_sum(&mut again).unwrap();
            (data, again)
        });
        for (data, again) in sums {
            assert_eq!(data, vec![6.0, 60.0, 4.0]);
            assert_eq!(again, vec![6.0]);
        }
    }

    #[test]
    fn half_all_reduce_accumulates_in_the_format() {
        let bf = |x: f32| half::bf16::from_f32(x).to_bits();
        let sums = LocalJob::new(4, 1).run(|ctx| {
            // Rank 0 holds 1, the others 2^-9 each: added one at a time in bf16, every 2^-9 is
            // lost to rounding; an f32 sum would give 1 + 3 * 2^-9, i.e. 1.0078125 in bf16.
            let r = ctx.world.rank();
            let mut data = vec![if r == 0 { bf(1.0) } else { bf(1.0 / 512.0) }, bf(r as f32)];
            ctx.world
                .all_reduce_sum_half(&mut data, HalfFormat::Bf16)
                .unwrap();
            data
        });
        for data in sums {
            assert_eq!(data, vec![bf(1.0), bf(6.0)]);
        }
    }

    #[test]
    fn all_gather_concatenates_in_rank_order() {
        let gathered = LocalJob::new(4, 1).run(|ctx| {
            let r = ctx.world.rank() as f32;
            ctx.world.all_gather(&[r, r + 0.5]).unwrap()
        });
        for all in gathered {
            assert_eq!(all, vec![0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5]);
        }
    }

    #[test]
    fn broadcast_bytes_replaces_any_length() {
        let received = LocalJob::new(4, 1).run(|ctx| {
            let rank = ctx.world.rank();
            let mut data = vec![7u8; rank * 3];
            ctx.world.broadcast_bytes(2, &mut data).unwrap();
            let mut long = if rank == 0 {
                vec![1u8; 1000]
            } else {
                vec![9u8; 2]
            };
            ctx.world.broadcast_bytes(0, &mut long).unwrap();
            (data, long)
        });
        for (data, long) in received {
            assert_eq!(data, vec![7u8; 6]);
            assert_eq!(long, vec![1u8; 1000]);
        }
    }

    #[test]
    fn sends_are_received_in_order() {
        LocalJob::new(4, 1).run(|ctx| {
            let (rank, size) = (ctx.world.rank(), ctx.world.size());
            let (next, prev) = ((rank + 1) % size, (rank + size - 1) % size);
            // Synchronous sends: even ranks send first, odd ranks receive first.
            let send_all = || {
                for i in 0..5 {
                    ctx.world.send(next, &[rank as f32, i as f32]).unwrap();
                }
            };
            let recv_all = || {
                for i in 0..5 {
                    let mut data = [0.0; 2];
                    ctx.world.recv(prev, &mut data).unwrap();
                    assert_eq!(data, [prev as f32, i as f32]);
                }
            };
            if rank % 2 == 0 {
                send_all();
                recv_all();
            } else {
                recv_all();
                send_all();
            }
        });
    }

    #[test]
    fn send_bytes_and_f32_interleave_in_order() {
        LocalJob::new(4, 1).run(|ctx| match ctx.world.rank() {
            0 => {
                ctx.world.send_bytes(3, b"header").unwrap();
                ctx.world.send(3, &[1.0, 2.0]).unwrap();
                ctx.world.send_bytes(3, &[]).unwrap();
                ctx.world.send_bytes(3, &vec![5u8; 4096]).unwrap();
            }
            3 => {
                assert_eq!(ctx.world.recv_bytes(0).unwrap(), b"header");
                let mut data = [0.0; 2];
                ctx.world.recv(0, &mut data).unwrap();
                assert_eq!(data, [1.0, 2.0]);
                assert_eq!(ctx.world.recv_bytes(0).unwrap(), Vec::<u8>::new());
                assert_eq!(ctx.world.recv_bytes(0).unwrap(), vec![5u8; 4096]);
            }
            _ => {}
        });
    }

    #[test]
    fn recv_of_the_wrong_length_or_kind_is_an_error() {
        let errors = LocalJob::new(2, 1).run(|ctx| {
            if ctx.world.rank() == 0 {
                ctx.world.send(1, &[1.0, 2.0, 3.0]).unwrap();
                ctx.world.send_bytes(1, b"x").unwrap();
                Vec::new()
            } else {
                let mut short = [0.0; 2];
                let wrong_len = ctx.world.recv(0, &mut short).unwrap_err().to_string();
                let wrong_kind = ctx.world.recv(0, &mut short).unwrap_err().to_string();
                vec![wrong_len, wrong_kind]
            }
        });
        assert!(
            errors[1][0].contains("sent 3 f32 values, the receive expects 2"),
            "{}",
            errors[1][0]
        );
        assert!(errors[1][1].contains("sent bytes"), "{}", errors[1][1]);
    }

    #[test]
    fn barrier_waits_for_every_rank() {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let arrived = AtomicUsize::new(0);
        let seen = LocalJob::new(4, 1).run(|ctx| {
            std::thread::sleep(Duration::from_millis(10 * ctx.world.rank() as u64));
            arrived.fetch_add(1, Ordering::SeqCst);
            ctx.world.barrier().unwrap();
            arrived.load(Ordering::SeqCst)
        });
        assert_eq!(seen, vec![4; 4]);
    }

    #[test]
    fn tp_groups_reduce_within_their_stage() {
        let results = LocalJob::new(2, 2).run(|ctx| {
            let t = ctx.topology;
            assert_eq!(ctx.tp_group.rank(), t.tp_rank());
            assert_eq!(ctx.tp_group.size(), 2);
            assert_eq!(ctx.tp_group.name(), format!("tp[stage {}]", t.stage()));
            let mut data = vec![t.rank as f32];
            ctx.tp_group.all_reduce_sum(&mut data).unwrap();
            let mut world = vec![1.0];
            ctx.world.all_reduce_sum(&mut world).unwrap();
            (t.stage(), data[0], world[0])
        });
        // Stage 0 holds ranks 0 and 1, stage 1 ranks 2 and 3.
        assert_eq!(
            results,
            vec![(0, 1.0, 4.0), (0, 1.0, 4.0), (1, 5.0, 4.0), (1, 5.0, 4.0)]
        );
    }

    #[test]
    fn mismatched_collectives_fail_on_every_rank() {
        let errors = LocalJob::new(2, 1).run(|ctx| {
            if ctx.world.rank() == 0 {
                ctx.world
                    .all_reduce_sum(&mut [1.0])
                    .unwrap_err()
                    .to_string()
            } else {
                ctx.world.all_gather(&[1.0]).unwrap_err().to_string()
            }
        });
        for e in errors {
            assert!(
                e.contains("rank 0 called all_reduce_sum (1), rank 1 called all_gather (1)"),
                "{e}"
            );
        }
    }

    #[test]
    fn a_missing_peer_times_out_instead_of_hanging() {
        let job = LocalJob::with_timeout(2, 1, Duration::from_millis(200));
        let errors = job.run(|ctx| {
            if ctx.world.rank() == 0 {
                Some(ctx.world.barrier().unwrap_err().to_string())
            } else {
                None
            }
        });
        let e = errors[0].as_deref().unwrap_or_default();
        assert_eq!(
            e,
            "barrier on world (rank 0 of 2): timed out after 0.2 s waiting for rank 1 to join"
        );
    }

    #[test]
    fn a_panicking_rank_fails_its_peers_fast() {
        let job = LocalJob::with_timeout(2, 1, Duration::from_secs(30));
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            job.run(|ctx| {
                if ctx.world.rank() == 1 {
                    panic!("rank 1 fails");
                }
                ctx.world.barrier().unwrap_err().to_string()
            })
        }));
        assert!(outcome.is_err());
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
