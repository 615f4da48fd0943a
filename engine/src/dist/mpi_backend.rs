//! MPI backend (Open MPI, MPICH; through rsmpi): the world communicator and the TP groups split
//! from it, plus a watchdog that brings the job down when a rank blocks too long.
//!
//! MPI is initialised with `MPI_THREAD_FUNNELED`: every MPI call comes from the thread that called
//! [`MpiWorld::init`] (rsmpi's communicators are neither `Send` nor `Sync`, which enforces it).
//! The watchdog thread never calls MPI: it only reads the slot each blocking operation writes.

use std::cell::RefCell;
use std::marker::PhantomData;
use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::point_to_point::{Message, Status};
use mpi::topology::{Color, SimpleCommunicator};
use mpi::traits::{
    Communicator as _, CommunicatorCollectives as _, Destination as _, Equivalence as _, Root as _,
    Source as _,
};
use mpi::Threading;

use super::comm::{Communicator, DistError, HalfFormat, DEFAULT_COMM_TIMEOUT};
use super::context::DistContext;
use super::topology::Topology;
use crate::error::{EngineError, Result};

/// Tags tell a receive what kind of message it matched; every message between a pair of ranks is
/// received in send order whatever its kind, so a mismatch is an error rather than a deadlock.
const TAG_F32: i32 = 1;
const TAG_BYTES: i32 = 2;

/// How often the watchdog looks at the blocked operation.
const WATCHDOG_PERIOD: Duration = Duration::from_millis(250);

/// This process's MPI environment: initialised once, finalised on drop.
pub struct MpiWorld {
    /// `None` only while dropping (finalize must come after the watchdog is armed for it).
    universe: Option<Universe>,
    rank: usize,
    size: usize,
    watchdog: Arc<Watchdog>,
    /// Neither `Send` nor `Sync`: MPI is used, and finalised, on the thread that initialised it.
    _funneled: PhantomData<*const ()>,
}

impl MpiWorld {
    /// Initialises MPI (a world of one when not launched by `mpirun`/`srun`) and starts the
    /// watchdog. Fails if MPI was already initialised in this process.
    pub fn init() -> Result<MpiWorld> {
        let (universe, threading) = mpi::initialize_with_threading(Threading::Funneled)
            .ok_or_else(|| {
                EngineError::Request("MPI is already initialised in this process".into())
            })?;
        if threading == Threading::Single {
            tracing::warn!(
                "MPI offers only MPI_THREAD_SINGLE; the watchdog thread never calls MPI"
            );
        }
        let world = universe.world();
        let (rank, size) = (world.rank() as usize, world.size() as usize);
        let watchdog = Arc::new(Watchdog {
            rank,
            timeout_ms: AtomicU64::new(DEFAULT_COMM_TIMEOUT.as_millis() as u64),
            blocked: Mutex::new(None),
            stop: AtomicBool::new(false),
        });
        let watched = Arc::clone(&watchdog);
        thread::Builder::new()
            .name("comm-watchdog".into())
            .spawn(move || watched.watch())
            .map_err(|e| EngineError::Request(format!("starting the MPI watchdog thread: {e}")))?;
        Ok(MpiWorld {
            universe: Some(universe),
            rank,
            size,
            watchdog,
            _funneled: PhantomData,
        })
    }

    pub fn world_size(&self) -> usize {
        self.size
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    /// This rank's view of a `tp x pp` job: checks the world size, splits the world into one TP
    /// group per stage (collective: every rank must call it), and arms the watchdog with
    /// `timeout` (zero disables it).
    pub fn context(&self, tp: usize, pp: usize, timeout: Duration) -> Result<DistContext> {
        let topology = Topology::new(
            tp,
            pp,
            self.size,
            self.rank,
            Topology::local_rank_from_env(),
        )?;
        self.watchdog
            .timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
        let world = SimpleCommunicator::world();
        let tp_name = format!("tp[stage {}]", topology.stage());
        let tp_comm = {
            let _blocked = self.watchdog.enter("split", "world");
            world.split_by_color_with_key(
                Color::with_value(topology.stage() as i32),
                topology.tp_rank() as i32,
            )
        }
        .ok_or_else(|| {
            EngineError::Request(format!("MPI_Comm_split for {tp_name} gave no communicator"))
        })?;
        Ok(DistContext {
            topology,
            world: Box::new(MpiCommunicator::new(world, "world", &self.watchdog)),
            tp_group: Box::new(MpiCommunicator::new(tp_comm, &tp_name, &self.watchdog)),
        })
    }

    /// Brings the whole job down now (`MPI_Abort` on the world): for a rank that hit an error
    /// its peers cannot know about. Print the error before calling this.
    pub fn abort(&self, code: i32) -> ! {
        SimpleCommunicator::world().abort(code)
    }
}

impl Drop for MpiWorld {
    fn drop(&mut self) {
        {
            // Finalize waits for every rank: a rank stuck there is brought down like any other.
            let _blocked = self.watchdog.enter("finalize", "world");
            drop(self.universe.take());
        }
        self.watchdog.stop.store(true, Ordering::Relaxed);
    }
}

/// The operation this process is blocked in, shared with the watchdog thread.
struct Watchdog {
    rank: usize,
    /// Zero disables the watchdog.
    timeout_ms: AtomicU64,
    blocked: Mutex<Option<Blocked>>,
    stop: AtomicBool,
}

struct Blocked {
    op: &'static str,
    group: Arc<str>,
    since: Instant,
}

/// Clears the blocked slot when the operation returns.
struct BlockedGuard<'a>(&'a Watchdog);

impl Drop for BlockedGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.0.blocked.lock() {
            *slot = None;
        }
    }
}

impl Watchdog {
    fn enter(&self, op: &'static str, group: impl Into<Arc<str>>) -> BlockedGuard<'_> {
        if let Ok(mut slot) = self.blocked.lock() {
            *slot = Some(Blocked {
                op,
                group: group.into(),
                since: Instant::now(),
            });
        }
        BlockedGuard(self)
    }

    /// The watchdog thread: exits the process (mpirun and srun then kill the other ranks) when
    /// one operation has been blocked longer than the timeout.
    fn watch(&self) {
        while !self.stop.load(Ordering::Relaxed) {
            thread::sleep(WATCHDOG_PERIOD);
            if let Some(line) = self.overdue() {
                eprintln!("{line}");
                std::process::exit(1);
            }
        }
    }

    /// The line to print when the blocked operation has outlived the timeout.
    fn overdue(&self) -> Option<String> {
        let timeout = Duration::from_millis(self.timeout_ms.load(Ordering::Relaxed));
        let slot = self.blocked.lock().ok()?;
        let blocked = slot.as_ref()?;
        let elapsed = blocked.since.elapsed();
        (!timeout.is_zero() && elapsed > timeout).then(|| {
            format!(
                "engine: rank {}: {} on {} blocked for {:.1} s (--comm-timeout {} s); aborting the job",
                self.rank,
                blocked.op,
                blocked.group,
                elapsed.as_secs_f64(),
                timeout.as_secs_f64()
            )
        })
    }
}

/// A group of MPI ranks (the world, or a stage's TP group) as a [`Communicator`].
pub struct MpiCommunicator {
    /// Freed on drop unless MPI is already finalised (a context that outlives its `MpiWorld`).
    comm: ManuallyDrop<SimpleCommunicator>,
    name: Arc<str>,
    rank: usize,
    size: usize,
    watchdog: Arc<Watchdog>,
    /// The send side of an all-reduce: rsmpi exposes no `MPI_IN_PLACE`, so `data` is copied here
    /// once and reduced back into `data`.
    scratch: RefCell<Vec<f32>>,
}

impl MpiCommunicator {
    fn new(comm: SimpleCommunicator, name: &str, watchdog: &Arc<Watchdog>) -> Self {
        Self {
            rank: comm.rank() as usize,
            size: comm.size() as usize,
            comm: ManuallyDrop::new(comm),
            name: name.into(),
            watchdog: Arc::clone(watchdog),
            scratch: RefCell::new(Vec::new()),
        }
    }

    fn error(&self, op: &'static str, message: impl Into<String>) -> DistError {
        DistError {
            op,
            group: self.name.to_string(),
            rank: self.rank,
            size: self.size,
            message: message.into(),
        }
    }

    fn blocked(&self, op: &'static str) -> BlockedGuard<'_> {
        self.watchdog.enter(op, Arc::clone(&self.name))
    }

    /// MPI counts are `i32`.
    fn check_len(&self, op: &'static str, len: usize) -> Result<(), DistError> {
        if len > i32::MAX as usize {
            return Err(self.error(
                op,
                format!("{len} elements exceed MPI's count limit of 2^31-1"),
            ));
        }
        Ok(())
    }

    fn check_peer(&self, op: &'static str, peer: usize) -> Result<(), DistError> {
        if peer >= self.size {
            return Err(self.error(op, format!("peer rank {peer} outside the group")));
        }
        if peer == self.rank {
            return Err(self.error(op, "a rank cannot send to or receive from itself"));
        }
        Ok(())
    }

    /// Matches the next message from `src` (of any kind, so that order is kept) and checks that
    /// it is of kind `tag`; a message of the other kind is received and dropped, and is an error.
    fn probe(
        &self,
        op: &'static str,
        src: usize,
        tag: i32,
    ) -> Result<(Message, Status), DistError> {
        self.check_peer(op, src)?;
        let (message, status) = self.comm.process_at_rank(src as i32).matched_probe();
        if status.tag() == tag {
            return Ok((message, status));
        }
        let got = if status.tag() == TAG_F32 {
            let mut sink = vec![0f32; status.count(f32::equivalent_datatype()).max(0) as usize];
            message.matched_receive_into(&mut sink[..]);
            format!("{} f32 values", sink.len())
        } else {
            let mut sink = vec![0u8; status.count(u8::equivalent_datatype()).max(0) as usize];
            message.matched_receive_into(&mut sink[..]);
            format!("{} bytes (tag {})", sink.len(), status.tag())
        };
        let expected = if tag == TAG_F32 {
            "f32 values"
        } else {
            "bytes"
        };
        Err(self.error(
            op,
            format!("rank {src} sent {got}, the receive expects {expected}"),
        ))
    }
}

impl Drop for MpiCommunicator {
    fn drop(&mut self) {
        if !mpi::is_finalized() {
            // SAFETY: `comm` is not used again.
            unsafe { ManuallyDrop::drop(&mut self.comm) };
        }
    }
}

impl Communicator for MpiCommunicator {
    fn rank(&self) -> usize {
        self.rank
    }

    fn size(&self) -> usize {
        self.size
    }

    fn all_reduce_sum(&self, data: &mut [f32]) -> Result<(), DistError> {
        let op = "all_reduce_sum";
        self.check_len(op, data.len())?;
        let mut send = self.scratch.borrow_mut();
        send.clear();
        send.extend_from_slice(data);
        let _blocked = self.blocked(op);
        self.comm
            .all_reduce_into(&send[..], data, SystemOperation::sum());
        Ok(())
    }

    /// NCCL's ring algorithm on MPI point-to-point: a reduce-scatter in `size - 1` steps (each
    /// rank adds the chunk its left neighbour passes, rounding to the format), then an all-gather
    /// of the summed chunks. MPI has no 16-bit float sum, and its user operations would need
    /// libffi.
    fn all_reduce_sum_half(&self, data: &mut [u16], format: HalfFormat) -> Result<(), DistError> {
        let op = "all_reduce_sum_half";
        let n = self.size;
        if n == 1 {
            return Ok(());
        }
        let chunk = data.len().div_ceil(n);
        self.check_len(op, chunk * n)?;
        // Padded to n equal chunks; padding is +0.0 in both formats.
        let mut ring = vec![0u16; chunk * n];
        ring[..data.len()].copy_from_slice(data);
        let mut incoming = vec![0u16; chunk];
        let next = self.comm.process_at_rank(((self.rank + 1) % n) as i32);
        let prev = self.comm.process_at_rank(((self.rank + n - 1) % n) as i32);
        let _blocked = self.blocked(op);
        for step in 0..n - 1 {
            let send = (self.rank + n - step) % n;
            let add = (self.rank + n - step - 1) % n;
            mpi::point_to_point::send_receive_into(
                &ring[send * chunk..(send + 1) * chunk],
                &next,
                &mut incoming[..],
                &prev,
            );
            format.accumulate(&mut ring[add * chunk..(add + 1) * chunk], &incoming);
        }
        // Rank r now holds the full sum of chunk (r + 1) % n.
        let own = (self.rank + 1) % n;
        let mut gathered = vec![0u16; chunk * n];
        self.comm
            .all_gather_into(&ring[own * chunk..(own + 1) * chunk], &mut gathered[..]);
        for (holder, summed) in gathered.chunks(chunk).enumerate() {
            let index = (holder + 1) % n;
            ring[index * chunk..(index + 1) * chunk].copy_from_slice(summed);
        }
        data.copy_from_slice(&ring[..data.len()]);
        Ok(())
    }

    fn all_gather(&self, data: &[f32]) -> Result<Vec<f32>, DistError> {
        let op = "all_gather";
        self.check_len(op, data.len() * self.size)?;
        let mut all = vec![0f32; data.len() * self.size];
        let _blocked = self.blocked(op);
        self.comm.all_gather_into(data, &mut all[..]);
        Ok(all)
    }

    fn broadcast_bytes(&self, root: usize, data: &mut Vec<u8>) -> Result<(), DistError> {
        let op = "broadcast_bytes";
        if root >= self.size {
            return Err(self.error(op, format!("root {root} outside the group")));
        }
        let root_process = self.comm.process_at_rank(root as i32);
        let _blocked = self.blocked(op);
        let mut len = data.len() as u64;
        root_process.broadcast_into(&mut len);
        // Every rank now knows the length, so every rank fails alike.
        self.check_len(op, len as usize)?;
        if self.rank != root {
            data.clear();
            data.resize(len as usize, 0);
        }
        root_process.broadcast_into(&mut data[..]);
        Ok(())
    }

    fn send(&self, dest: usize, data: &[f32]) -> Result<(), DistError> {
        let op = "send";
        self.check_peer(op, dest)?;
        self.check_len(op, data.len())?;
        let _blocked = self.blocked(op);
        self.comm
            .process_at_rank(dest as i32)
            .send_with_tag(data, TAG_F32);
        Ok(())
    }

    fn recv(&self, src: usize, data: &mut [f32]) -> Result<(), DistError> {
        let op = "recv";
        let _blocked = self.blocked(op);
        let (message, status) = self.probe(op, src, TAG_F32)?;
        let count = status.count(f32::equivalent_datatype()).max(0) as usize;
        if count != data.len() {
            let mut sink = vec![0f32; count];
            message.matched_receive_into(&mut sink[..]);
            return Err(self.error(
                op,
                format!(
                    "rank {src} sent {count} f32 values, the receive expects {}",
                    data.len()
                ),
            ));
        }
        message.matched_receive_into(data);
        Ok(())
    }

    fn send_bytes(&self, dest: usize, data: &[u8]) -> Result<(), DistError> {
        let op = "send_bytes";
        self.check_peer(op, dest)?;
        self.check_len(op, data.len())?;
        let _blocked = self.blocked(op);
        self.comm
            .process_at_rank(dest as i32)
            .send_with_tag(data, TAG_BYTES);
        Ok(())
    }

    fn recv_bytes(&self, src: usize) -> Result<Vec<u8>, DistError> {
        let op = "recv_bytes";
        let _blocked = self.blocked(op);
        let (message, status) = self.probe(op, src, TAG_BYTES)?;
        let mut data = vec![0u8; status.count(u8::equivalent_datatype()).max(0) as usize];
        message.matched_receive_into(&mut data[..]);
        Ok(data)
    }

    fn barrier(&self) -> Result<(), DistError> {
        let _blocked = self.blocked("barrier");
        self.comm.barrier();
        Ok(())
    }

    fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchdog_names_the_op_blocked_past_the_timeout() {
        let watchdog = Watchdog {
            rank: 3,
            timeout_ms: AtomicU64::new(60_000),
            blocked: Mutex::new(None),
            stop: AtomicBool::new(false),
        };
        assert_eq!(watchdog.overdue(), None, "nothing blocked");
        let blocked = watchdog.enter("all_reduce_sum", "tp[stage 1]");
        assert_eq!(watchdog.overdue(), None, "not overdue yet");
        watchdog.timeout_ms.store(1, Ordering::Relaxed);
        thread::sleep(Duration::from_millis(5));
        let line = watchdog.overdue().unwrap_or_default();
        assert!(
            line.starts_with("engine: rank 3: all_reduce_sum on tp[stage 1] blocked for ")
                && line.ends_with(" s (--comm-timeout 0.001 s); aborting the job"),
            "{line}"
        );
        watchdog.timeout_ms.store(0, Ordering::Relaxed);
        assert_eq!(
            watchdog.overdue(),
            None,
            "a zero timeout disables the watchdog"
        );
        watchdog.timeout_ms.store(1, Ordering::Relaxed);
        drop(blocked);
        assert_eq!(watchdog.overdue(), None, "the op returned");
    }

    /// The only test in this binary that initialises MPI (a singleton world, no mpirun): MPI can
    /// be initialised once per process.
    #[test]
    fn singleton_world_and_second_init_is_an_error() {
        let world = match MpiWorld::init() {
            Ok(world) => world,
            Err(e) => panic!("singleton MPI init failed ({e}): install Open MPI (make setup)"),
        };
        assert_eq!((world.rank(), world.world_size()), (0, 1));
        let ctx = world.context(1, 1, Duration::from_secs(30)).unwrap();
        let mut data = vec![1.5, 2.5];
        ctx.tp_group.all_reduce_sum(&mut data).unwrap();
        assert_eq!(data, vec![1.5, 2.5]);
        assert_eq!(ctx.tp_group.name(), "tp[stage 0]");
        let again = MpiWorld::init().err().map(|e| e.to_string());
        assert_eq!(
            again.as_deref(),
            Some("invalid request: MPI is already initialised in this process")
        );
        drop(ctx);
        drop(world);
        assert!(
            MpiWorld::init().is_err(),
            "MPI cannot be initialised after finalize either"
        );
    }
}
