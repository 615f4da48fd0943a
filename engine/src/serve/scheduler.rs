//! The step loop: rank 0 leads (takes requests from the HTTP side, decides each step's plan and
//! broadcasts it), every other rank follows (receives the plan, runs the step). All MPI traffic
//! happens here, on the thread that initialised MPI.
//!
//! Capacity: a request holds a slot from the moment the HTTP side accepts it until it leaves the
//! scheduler; there are `max_batch + max_queue` slots, so at most `max_queue` requests wait.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;

use super::error::ServeError;
use super::metrics::Metrics;
use crate::dist::DistContext;
use crate::runtime::batcher::{Admission, Batcher, SequenceId, StepEvent, StepPlan, WireParams};
use crate::runtime::sampling::SampledToken;
use crate::runtime::FinishReason;

/// What rank 0 broadcasts at every step (`P` is the plan, borrowed when sent).
#[derive(Debug, Clone, Serialize, Deserialize)]
enum ControlMessage<P> {
    Step(P),
    /// Nothing to do: sent while idle so that followers are not taken for hung.
    Heartbeat,
    Shutdown,
}

/// A request handed from the HTTP side to the scheduler.
pub struct Submission {
    pub prompt_ids: Vec<u32>,
    pub params: WireParams,
    /// Where its tokens go; dropping the receiver (client gone, stop string) cancels it.
    pub events: UnboundedSender<Event>,
}

/// What the scheduler tells a request.
#[derive(Debug, Clone)]
pub enum Event {
    Token {
        token: SampledToken,
        finish: Option<FinishReason>,
    },
    Rejected(String),
}

/// Slots shared by the HTTP side (which takes them) and the scheduler (which gives them back).
#[derive(Debug)]
pub struct Limits {
    pub max_batch: usize,
    pub max_queue: usize,
    /// Requests accepted and not yet finished.
    taken: AtomicUsize,
    /// Sequences in the running batch.
    running: AtomicUsize,
}

impl Limits {
    pub fn new(max_batch: usize, max_queue: usize) -> Arc<Self> {
        Arc::new(Self {
            max_batch,
            max_queue,
            taken: AtomicUsize::new(0),
            running: AtomicUsize::new(0),
        })
    }

    /// Takes a slot for a new request, or says the queue is full.
    pub fn try_take(&self) -> bool {
        let capacity = self.max_batch + self.max_queue;
        self.taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < capacity).then_some(n + 1)
            })
            .is_ok()
    }

    /// Gives a slot back.
    pub fn give_back(&self) {
        // Never below zero, even if a slot were given back twice.
        let _ = self
            .taken
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1));
    }

    pub fn running(&self) -> usize {
        self.running.load(Ordering::Acquire)
    }

    /// Requests accepted but not running yet.
    pub fn waiting(&self) -> usize {
        self.taken
            .load(Ordering::Acquire)
            .saturating_sub(self.running())
    }
}

/// Rank 0's loop: runs until the HTTP side has gone (every submission sender dropped), then
/// tells the followers to stop.
pub fn lead(
    batcher: &mut Batcher<'_>,
    ctx: &DistContext,
    submissions: Receiver<Submission>,
    limits: &Limits,
    metrics: &Metrics,
    heartbeat: Option<Duration>,
) -> Result<(), ServeError> {
    let mut waiting: VecDeque<(SequenceId, Submission)> = VecDeque::new();
    let mut running: HashMap<SequenceId, UnboundedSender<Event>> = HashMap::new();
    let mut next_id: SequenceId = 0;
    let mut open = true;
    let mut enqueue = |submission: Submission, waiting: &mut VecDeque<_>| {
        next_id += 1;
        waiting.push_back((next_id, submission));
    };
    if heartbeat.is_some() {
        // Followers that finished loading first have been waiting.
        broadcast(ctx, ControlMessage::Heartbeat)?;
    }
    loop {
        // 1. New requests; block while there is nothing to do.
        if open && running.is_empty() && waiting.is_empty() {
            let received = match heartbeat {
                Some(period) => submissions.recv_timeout(period),
                None => submissions
                    .recv()
                    .map_err(|_| RecvTimeoutError::Disconnected),
            };
            match received {
                Ok(submission) => enqueue(submission, &mut waiting),
                Err(RecvTimeoutError::Timeout) => {
                    broadcast(ctx, ControlMessage::Heartbeat)?;
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => open = false,
            }
        }
        while open {
            match submissions.try_recv() {
                Ok(submission) => enqueue(submission, &mut waiting),
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => open = false,
            }
        }
        if !open && running.is_empty() && waiting.is_empty() {
            broadcast(ctx, ControlMessage::Shutdown)?;
            return Ok(());
        }

        // 2. Requests whose client went away (or that ended on a stop string) leave.
        waiting.retain(|(_, s)| {
            let gone = s.events.is_closed();
            if gone {
                limits.give_back();
            }
            !gone
        });
        let mut plan = StepPlan::default();
        running.retain(|&id, events| {
            let gone = events.is_closed();
            if gone {
                plan.release.push(id);
                limits.give_back();
            }
            !gone
        });
        plan.release.sort_unstable();

        // 3. Waiting requests join while there is room.
        while running.len() < limits.max_batch {
            let Some((id, submission)) = waiting.pop_front() else {
                break;
            };
            plan.admit.push(Admission {
                id,
                prompt_ids: submission.prompt_ids,
                params: submission.params,
            });
            running.insert(id, submission.events);
        }
        limits.running.store(running.len(), Ordering::Release);
        if plan.is_empty() && batcher.running() == 0 {
            continue;
        }

        // 4. The step, on every rank.
        let (admitted, decoding) = (plan.admit.len(), running.len() - plan.admit.len());
        if decoding > 0 {
            metrics.batch_size.observe(decoding as f64);
        }
        let clock = std::time::Instant::now();
        broadcast(ctx, ControlMessage::Step(&plan))?;
        batcher.step(plan, ctx, &mut |event| {
            let (id, message, finished) = match event {
                StepEvent::Token { id, token, finish } => {
                    (id, Event::Token { token, finish }, finish.is_some())
                }
                StepEvent::Rejected { id, message } => (id, Event::Rejected(message), true),
            };
            if let Some(events) = running.get(&id) {
                // A closed channel is noticed before the next step.
                let _ = events.send(message);
            }
            if finished && running.remove(&id).is_some() {
                limits.give_back();
            }
        })?;
        limits.running.store(running.len(), Ordering::Release);
        tracing::debug!(
            admitted,
            decoding,
            ms = clock.elapsed().as_secs_f64() * 1e3,
            "step"
        );
    }
}

/// A follower's loop: runs each step rank 0 broadcasts until it says to stop.
pub fn follow(batcher: &mut Batcher<'_>, ctx: &DistContext) -> Result<(), ServeError> {
    loop {
        let mut bytes = Vec::new();
        ctx.world
            .broadcast_bytes(0, &mut bytes)
            .map_err(crate::error::EngineError::from)?;
        let message: ControlMessage<StepPlan> = serde_json::from_slice(&bytes)
            .map_err(|e| ServeError::ControlPlane(format!("bad message from rank 0: {e}")))?;
        match message {
            ControlMessage::Step(plan) => batcher.step(plan, ctx, &mut |_| {})?,
            ControlMessage::Heartbeat => {}
            ControlMessage::Shutdown => return Ok(()),
        }
    }
}

fn broadcast(ctx: &DistContext, message: ControlMessage<&StepPlan>) -> Result<(), ServeError> {
    if ctx.topology.world_size == 1 {
        return Ok(());
    }
    let mut bytes =
        serde_json::to_vec(&message).map_err(|e| ServeError::ControlPlane(e.to_string()))?;
    ctx.world
        .broadcast_bytes(0, &mut bytes)
        .map_err(crate::error::EngineError::from)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_borrowed_plan_reads_back_as_an_owned_one() {
        let plan = StepPlan {
            admit: vec![Admission {
                id: 7,
                prompt_ids: vec![1, 2, 3],
                params: WireParams::from(&crate::runtime::SamplingParams::default()),
            }],
            release: vec![3],
        };
        let bytes = serde_json::to_vec(&ControlMessage::Step(&plan)).unwrap();
        match serde_json::from_slice::<ControlMessage<StepPlan>>(&bytes).unwrap() {
            ControlMessage::Step(back) => assert_eq!(back, plan),
            other => panic!("{other:?}"),
        }
        let bytes = serde_json::to_vec(&ControlMessage::<&StepPlan>::Heartbeat).unwrap();
        assert!(matches!(
            serde_json::from_slice::<ControlMessage<StepPlan>>(&bytes).unwrap(),
            ControlMessage::Heartbeat
        ));
    }

    #[test]
    fn slots_cover_the_batch_and_the_queue() {
        let limits = Limits::new(2, 1);
        assert!(limits.try_take() && limits.try_take() && limits.try_take());
        assert!(!limits.try_take(), "batch of 2 and queue of 1 are full");
        limits.running.store(2, Ordering::Release);
        assert_eq!(limits.waiting(), 1);
        limits.give_back();
        assert!(limits.try_take());
        for _ in 0..5 {
            limits.give_back();
        }
        assert_eq!(limits.taken.load(Ordering::Acquire), 0);
    }
}
