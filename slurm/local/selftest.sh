#!/usr/bin/env bash
# selftest.sh — checks the cluster made by cluster.sh (same SHARDLAB_SLURM_* knobs): a batch job,
# a multi-node step, fake GPU gres, sacct through slurmdbd, and MPI ranks of the engine itself
# (`engine dist-check` under `srun --mpi=pmix` across both nodes). ENGINE_BIN names the engine
# binary (default: the Makefile's debug build). Exit status 1 if any check fails.
set -euo pipefail
dir=${SHARDLAB_SLURM_DIR:-/tmp/shardlab-slurm}
nodes=${SHARDLAB_SLURM_NODES:-2}
gpus=${SHARDLAB_SLURM_GPUS:-2}
engine=${ENGINE_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/shardlab-target}/debug/engine}
# shellcheck disable=SC1091
. "$dir/env.sh"
work=$dir/selftest
mkdir -p "$work"
cd "$work"
failed=0
check() { # check NAME GOT WANTED
  if [ "$2" = "$3" ]; then echo "PASS $1"; else echo "FAIL $1: got [$2], wanted [$3]"; failed=1; fi
}

job=$(sbatch --parsable -o "$work/%j.out" --wrap 'hostname')
for _ in $(seq 1 600); do [ -z "$(squeue -h -j "$job" 2>/dev/null)" ] && break; sleep 0.1; done
check "sbatch --wrap" "$(scontrol -o show job "$job" | grep -o 'JobState=[A-Z]*')" JobState=COMPLETED

got=$(srun -N "$nodes" --ntasks-per-node=2 bash -c 'echo $SLURMD_NODENAME' | sort | uniq -c | awk '{print $1 $2}' | tr '\n' ' ')
wanted=$(for i in $(seq 1 "$nodes"); do printf '2node%s ' "$i"; done)
check "srun over $nodes nodes, 2 tasks each" "$got" "$wanted"

if [ "$gpus" -gt 0 ]; then
  got=$(srun -N "$nodes" --gpus-per-node=2 bash -c 'echo $CUDA_VISIBLE_DEVICES' | sort -u | tr '\n' ' ')
  check "--gpus-per-node=2" "$got" "0,1 "
fi

got=$(sacct -X -j "$job" -P -n -o JobID,State,ExitCode | head -1)
check "sacct (slurmdbd)" "$got" "$job|COMPLETED|0:0"

if [ -x "$engine" ]; then
  got=$(timeout 120 srun -N "$nodes" --ntasks-per-node=2 --mpi=pmix "$engine" dist-check --tp 2 --pp "$nodes" 2>&1 | grep -c '^dist-check ok' || true)
  check "srun --mpi=pmix engine dist-check (tp 2 x pp $nodes)" "$got" 1
else
  echo "FAIL engine dist-check: no engine binary at $engine (build it, or set ENGINE_BIN)"
  failed=1
fi
exit $failed
