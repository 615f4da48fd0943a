//! `engine dist-check`: every communicator operation on the world and on this rank's TP group,
//! with values each rank can predict, so a broken launch or interconnect fails before a model
//! is loaded.
//!
//! A mismatch is an error on the rank that sees it; its peers may already be in the next
//! operation, so the caller must bring the job down (`MpiWorld::abort`) rather than return.

use super::comm::{Communicator, DistError, HalfFormat};
use super::context::DistContext;
use crate::error::{EngineError, Result};

/// Long enough to leave MPI's eager protocol (a few KiB to 64 KiB): the large-message path.
const LONG: usize = 262_147;

/// Runs the checks and returns the line rank 0 prints.
pub fn run_dist_check(ctx: &DistContext) -> Result<String> {
    let t = ctx.topology;
    expect_place(&*ctx.world, "world", t.rank, t.world_size)?;
    expect_place(&*ctx.tp_group, "tp", t.tp_rank(), t.tp)?;
    for group in [&*ctx.world, &*ctx.tp_group] {
        check_collectives(group)?;
    }
    // The TP group holds exactly this stage's ranks, in tp_rank order.
    let members = ctx.tp_group.all_gather(&[t.rank as f32])?;
    let expected: Vec<f32> = (0..t.tp).map(|i| (t.stage() * t.tp + i) as f32).collect();
    expect(
        &*ctx.tp_group,
        "all_gather of world ranks",
        &expected,
        &members,
    )?;
    let mut ops = "all-reduce (f32, bf16, f16)/all-gather/broadcast/barrier";
    if t.pp > 1 {
        check_stage_ring(ctx)?;
        ops = "all-reduce (f32, bf16, f16)/all-gather/broadcast/send-recv/barrier";
    }
    ctx.world.barrier()?;
    Ok(format!(
        "dist-check ok: world {} (tp {} x pp {}), {ops} verified",
        t.world_size, t.tp, t.pp
    ))
}

fn check_collectives(group: &dyn Communicator) -> Result<()> {
    let (rank, size) = (group.rank(), group.size());
    let ramp = |i: usize| (i % 1000 + 1) as f32;
    for len in [1, 1000, LONG] {
        let mut data: Vec<f32> = (0..len).map(|i| (rank + 1) as f32 * ramp(i)).collect();
        group.all_reduce_sum(&mut data)?;
        let ranks_sum = (size * (size + 1) / 2) as f32;
        let expected: Vec<f32> = (0..len).map(|i| ranks_sum * ramp(i)).collect();
        expect(group, "all_reduce_sum", &expected, &data)?;
    }
    // 16-bit sums with every partial sum exact in both formats (small integers times powers of
    // two), so the order of the ring does not matter.
    let weight = |r: usize| 1 + r % 2;
    let pow2 = |i: usize| (1 << (i % 4)) as f32;
    let total: usize = (0..size).map(weight).sum();
    for format in [HalfFormat::Bf16, HalfFormat::F16] {
        for len in [1, 1000, LONG] {
            let mut data: Vec<u16> = (0..len)
                .map(|i| format.encode(weight(rank) as f32 * pow2(i)))
                .collect();
            group.all_reduce_sum_half(&mut data, format)?;
            let expected: Vec<f32> = (0..len).map(|i| total as f32 * pow2(i)).collect();
            let got: Vec<f32> = data.into_iter().map(|b| format.decode(b)).collect();
            expect(group, "all_reduce_sum_half", &expected, &got)?;
        }
    }

    let mine: Vec<f32> = (0..3).map(|j| (rank * 10 + j) as f32).collect();
    let all = group.all_gather(&mine)?;
    let expected: Vec<f32> = (0..size)
        .flat_map(|r| (0..3).map(move |j| (r * 10 + j) as f32))
        .collect();
    expect(group, "all_gather", &expected, &all)?;

    for root in [0, size - 1] {
        let message = format!("dist-check from rank {root} of {}", group.name()).into_bytes();
        // Non-roots start with a buffer of another length, which the broadcast must replace.
        let mut data = if rank == root {
            message.clone()
        } else {
            vec![b'?'; rank + 5]
        };
        group.broadcast_bytes(root, &mut data)?;
        if data != message {
            return Err(mismatch(
                group,
                "broadcast_bytes",
                format!(
                    "from root {root}: expected {:?}, got {:?}",
                    String::from_utf8_lossy(&message),
                    String::from_utf8_lossy(&data)
                ),
            ));
        }
    }

    group.barrier().map_err(dist)
}

/// Each rank sends to the rank with its tp_rank in the next stage (the last stage wraps to the
/// first) and receives from the previous one: f32 values, then bytes, in that order. Stage 0
/// sends first and the others receive first, so blocking sends cannot deadlock.
fn check_stage_ring(ctx: &DistContext) -> Result<()> {
    let t = ctx.topology;
    let next = t.rank_in_stage((t.stage() + 1) % t.pp);
    let prev = t.rank_in_stage((t.stage() + t.pp - 1) % t.pp);
    let values =
        |r: usize| -> Vec<f32> { (0..LONG).map(|i| (r * 1000 + i % 1000) as f32).collect() };
    let bytes = |r: usize| format!("stage ring from rank {r}").into_bytes();
    let world = &*ctx.world;

    let send = || -> Result<()> {
        world.send(next, &values(t.rank))?;
        world.send_bytes(next, &bytes(t.rank)).map_err(dist)
    };
    let recv = || -> Result<()> {
        let mut got = vec![0f32; LONG];
        world.recv(prev, &mut got)?;
        expect(
            world,
            &format!("recv from rank {prev}"),
            &values(prev),
            &got,
        )?;
        let got = world.recv_bytes(prev)?;
        if got != bytes(prev) {
            return Err(mismatch(
                world,
                "recv_bytes",
                format!(
                    "from rank {prev}: expected {:?}, got {:?}",
                    String::from_utf8_lossy(&bytes(prev)),
                    String::from_utf8_lossy(&got)
                ),
            ));
        }
        Ok(())
    };
    if t.is_first_stage() {
        send()?;
        recv()
    } else {
        recv()?;
        send()
    }
}

fn expect_place(group: &dyn Communicator, what: &str, rank: usize, size: usize) -> Result<()> {
    if (group.rank(), group.size()) != (rank, size) {
        return Err(mismatch(
            group,
            "rank/size",
            format!("the {what} group should place this rank at {rank} of {size}"),
        ));
    }
    Ok(())
}

fn expect(group: &dyn Communicator, op: &str, expected: &[f32], got: &[f32]) -> Result<()> {
    if got.len() != expected.len() {
        return Err(mismatch(
            group,
            op,
            format!("expected {} values, got {}", expected.len(), got.len()),
        ));
    }
    match expected.iter().zip(got).position(|(e, g)| e != g) {
        Some(i) => Err(mismatch(
            group,
            op,
            format!("element {i}: expected {}, got {}", expected[i], got[i]),
        )),
        None => Ok(()),
    }
}

fn mismatch(group: &dyn Communicator, op: &str, detail: String) -> EngineError {
    EngineError::Request(format!(
        "dist-check: {op} on {} (rank {} of {}): {detail}",
        group.name(),
        group.rank(),
        group.size()
    ))
}

fn dist(e: DistError) -> EngineError {
    EngineError::Request(format!("dist-check: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dist::local::LocalJob;

    fn check(tp: usize, pp: usize) -> Vec<String> {
        LocalJob::new(tp, pp).run(|ctx| run_dist_check(&ctx).map_err(|e| e.to_string()).unwrap())
    }

    #[test]
    fn dist_check_passes_on_a_2x2_local_job() {
        let lines = check(2, 2);
        assert_eq!(
            lines[0],
            "dist-check ok: world 4 (tp 2 x pp 2), all-reduce (f32, bf16, f16)/all-gather/broadcast/send-recv/barrier verified"
        );
        assert!(lines.iter().all(|l| l == &lines[0]));
    }

    #[test]
    fn dist_check_passes_without_pipeline_or_tensor_peers() {
        assert!(check(4, 1)[0].contains(
            "world 4 (tp 4 x pp 1), all-reduce (f32, bf16, f16)/all-gather/broadcast/barrier"
        ));
        assert!(check(1, 3)[2].contains("send-recv"));
        assert!(check(1, 1)[0].starts_with("dist-check ok: world 1"));
    }
}
