#!/usr/bin/env bash
# cluster.sh up|down|status — a real multi-node Slurm on this one Debian/Ubuntu machine, for
# development and the driver's tests: munge, slurmctld, N slurmd as fake nodes on loopback (each
# with fake GPUs), slurmdbd + MariaDB so that `sacct` works, and Open MPI through
# `srun --mpi=pmix`. Root, no systemd; every daemon is ours, found by its PID file.
#
# Knobs (environment): SHARDLAB_SLURM_DIR (/tmp/shardlab-slurm), SHARDLAB_SLURM_NODES (2),
# SHARDLAB_SLURM_CPUS (4 per node), SHARDLAB_SLURM_GPUS (2 per node, fake; 0 = none),
# SHARDLAB_SLURM_MEM_MB (8192 per node), SHARDLAB_SLURM_PORT (6817; slurmdbd PORT+2),
# SHARDLAB_SLURM_SLURMD_PORT (17000 + node), SHARDLAB_SLURM_DB_PORT (3307).
# Then: . $SHARDLAB_SLURM_DIR/env.sh   (SLURM_CONF and the Open MPI settings jobs need)
#
# Pitfalls handled here, each seen (see slurm/local/README.md): one slurmd per fake node via
# `slurmd -N` with its own port, spool, pid and log (%n); TmpFS per node or PMIx temp dirs collide;
# TCP-only Open MPI across fake nodes (shared-memory segments are named by hostname + local rank);
# fake GPUs need real character devices; sacct needs slurmdbd.
set -euo pipefail

cmd=${1:-up}
dir=${SHARDLAB_SLURM_DIR:-/tmp/shardlab-slurm}
nodes=${SHARDLAB_SLURM_NODES:-2}
cpus=${SHARDLAB_SLURM_CPUS:-4}
gpus=${SHARDLAB_SLURM_GPUS:-2}
mem_mb=${SHARDLAB_SLURM_MEM_MB:-8192}
ctld_port=${SHARDLAB_SLURM_PORT:-6817}
dbd_port=$((ctld_port + 2))
slurmd_port=${SHARDLAB_SLURM_SLURMD_PORT:-17000}
db_port=${SHARDLAB_SLURM_DB_PORT:-3307}
conf=$dir/etc/slurm.conf
export SLURM_CONF=$conf
started_ns=$(date +%s%N)

log() { echo "[local-slurm +$((($(date +%s%N) - started_ns) / 1000000))ms] $*"; }
die() { echo "[local-slurm] error: $*" >&2; exit 1; }

# alive PIDFILE CMDLINE-SUBSTRING: running, not a zombie, and its command line matches.
alive() {
  local pid
  pid=$(cat "$1" 2>/dev/null) || return 1
  [[ $pid =~ ^[0-9]+$ ]] && [ -r "/proc/$pid/status" ] || return 1
  grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" && return 1
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$2"
}

# TERM, wait up to 20 s (a zombie counts as gone: PID 1 may reap late), then KILL.
stop_pid() {
  local pid=$1 i
  kill -TERM "$pid" 2>/dev/null || return 0
  for i in $(seq 1 200); do
    [ -r "/proc/$pid/status" ] || return 0
    grep -q '^State:[[:space:]]*Z' "/proc/$pid/status" && return 0
    sleep 0.1
  done
  log "pid $pid ignored SIGTERM: SIGKILL"
  kill -KILL "$pid" 2>/dev/null || true
}

stop_pidfile() {
  if alive "$1" "$2"; then
    log "stopping $2 (pid $(cat "$1"))"
    stop_pid "$(cat "$1")"
  fi
  rm -f "$1"
}

# wait_for SECONDS WHAT COMMAND...: polls every 0.1 s; on timeout shows the daemons' logs.
wait_for() {
  local secs=$1 what=$2 i
  shift 2
  for i in $(seq 1 $((secs * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "[local-slurm] timed out after ${secs}s waiting for $what" >&2
  tail -n 30 "$dir"/log/*.log >&2 || true
  return 1
}

idle_nodes() { [ "$(sinfo -h -N -o '%T' 2>/dev/null | grep -c '^idle$')" -ge "$nodes" ]; }

install_packages() {
  local p missing=()
  for p in slurm-wlm munge slurmdbd mariadb-server openmpi-bin libopenmpi-dev; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" -eq 0 ] || die "installing ${missing[*]} needs root"
  log "apt-get install ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q --no-install-recommends "${missing[@]}" >"$dir/log/apt.log" 2>&1 || {
    apt-get update -q >>"$dir/log/apt.log" 2>&1
    apt-get install -y -q --no-install-recommends "${missing[@]}" >>"$dir/log/apt.log" 2>&1 || {
      tail -n 20 "$dir/log/apt.log"
      die "apt-get install failed (log: $dir/log/apt.log)"
    }
  }
}

write_config() {
  local i gres=""
  [ "$gpus" -gt 0 ] && gres=" Gres=gpu:$gpus"
  {
    cat <<CONF
ClusterName=shardlab-local
SlurmctldHost=localhost
SlurmctldPort=$ctld_port
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
MailProg=/bin/true
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/linux
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_min_interval=0
ReturnToService=2
SlurmdParameters=config_overrides
KillWait=5
MinJobAge=300
InactiveLimit=0
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool/%n
TmpFS=$dir/tmp/%n
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd-%n.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd-%n.log
JobCompType=jobcomp/filetxt
JobCompLoc=$dir/log/jobcomp.txt
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStoragePort=$dbd_port
AccountingStorageTRES=gres/gpu
CONF
    for i in $(seq 1 "$nodes"); do
      echo "NodeName=node$i NodeHostname=node$i NodeAddr=127.0.0.1 Port=$((slurmd_port + i)) CPUs=$cpus RealMemory=$mem_mb$gres State=UNKNOWN"
    done
    echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP"
  } >"$conf"
  rm -f "$dir/etc/gres.conf"
  if [ "$gpus" -gt 0 ]; then
    # gres/gpu needs File= naming character devices; these are never opened.
    mkdir -p "$dir/dev"
    for i in $(seq 0 $((gpus - 1))); do
      [ -c "$dir/dev/nvidia$i" ] || mknod "$dir/dev/nvidia$i" c 195 "$i"
    done
    printf 'AutoDetect=off\nName=gpu File=%s/dev/nvidia[0-%d]\n' "$dir" $((gpus - 1)) >"$dir/etc/gres.conf"
  fi
  printf '%s\n' AuthType=auth/munge DbdHost=localhost "DbdPort=$dbd_port" SlurmUser=root \
    "LogFile=$dir/log/slurmdbd.log" "PidFile=$dir/run/slurmdbd.pid" \
    StorageType=accounting_storage/mysql StorageHost=127.0.0.1 "StoragePort=$db_port" \
    StorageUser=slurm StoragePass=slurm StorageLoc=slurm_acct_db >"$dir/etc/slurmdbd.conf"
  chmod 600 "$dir/etc/slurmdbd.conf"
  cat >"$dir/env.sh" <<ENV
export SLURM_CONF=$conf
# Fake nodes share one host: Open MPI's shared-memory segments would collide across them.
export OMPI_MCA_btl=self,tcp
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
ENV
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then return 0; fi
  if [ ! -s /etc/munge/munge.key ]; then
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
  fi
  mkdir -p /run/munge "$dir/run/munge"
  chown munge:munge /run/munge "$dir/run/munge"
  chmod 755 /run/munge
  runuser -u munge -- /usr/sbin/munged --pid-file="$dir/run/munge/munged.pid"
  wait_for 10 munged sh -c 'munge -n | unmunge' || die "munged did not start"
  log "munged started (pid $(cat "$dir/run/munge/munged.pid"))"
}

start_accounting() {
  local sock=$dir/run/mysql/mysqld.sock
  if ! alive "$dir/run/mysql/mysqld.pid" mariadbd; then
    mkdir -p "$dir/mysql" "$dir/run/mysql"
    touch "$dir/log/mariadb.log"
    chown mysql:mysql "$dir/mysql" "$dir/run/mysql" "$dir/log/mariadb.log"
    [ -d "$dir/mysql/mysql" ] || mariadb-install-db --user=mysql --datadir="$dir/mysql" --skip-test-db \
      --auth-root-authentication-method=socket >"$dir/log/mariadb-install.log" 2>&1 ||
      die "mariadb-install-db failed (log: $dir/log/mariadb-install.log)"
    setsid /usr/sbin/mariadbd --no-defaults --user=mysql --datadir="$dir/mysql" --socket="$sock" \
      --pid-file="$dir/run/mysql/mysqld.pid" --bind-address=127.0.0.1 --port="$db_port" \
      --log-error="$dir/log/mariadb.log" --innodb-buffer-pool-size=64M </dev/null >/dev/null 2>&1 &
    wait_for 60 mariadbd mariadb --socket="$sock" -e 'select 1' || die "mariadbd did not start"
    log "mariadbd started (pid $(cat "$dir/run/mysql/mysqld.pid"))"
  fi
  mariadb --socket="$sock" -e "CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
    CREATE USER IF NOT EXISTS 'slurm'@'127.0.0.1' IDENTIFIED BY 'slurm';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
    GRANT ALL ON slurm_acct_db.* TO 'slurm'@'127.0.0.1';"
  if ! alive "$dir/run/slurmdbd.pid" slurmdbd; then
    # slurmdbd reads slurmdbd.conf beside $SLURM_CONF.
    /usr/sbin/slurmdbd
    wait_for 60 slurmdbd sacctmgr -n -P show cluster || die "slurmdbd did not start"
    log "slurmdbd started (pid $(cat "$dir/run/slurmdbd.pid"))"
  fi
}

up() {
  local i
  [ "$(id -u)" -eq 0 ] || die "the local cluster runs its daemons as root: run as root"
  # Nothing of ours running: a brand-new cluster (job ids, node state and accounting reset).
  alive "$dir/run/slurmctld.pid" slurmctld || alive "$dir/run/mysql/mysqld.pid" mariadbd ||
    rm -rf "$dir/state" "$dir/spool" "$dir/tmp" "$dir/mysql" "$dir/log"
  mkdir -p "$dir"/{etc,run,log,state}
  for i in $(seq 1 "$nodes"); do mkdir -p "$dir/spool/node$i" "$dir/tmp/node$i"; done
  install_packages
  log "packages ok"
  write_config
  start_munge
  start_accounting
  if alive "$dir/run/slurmctld.pid" slurmctld; then
    scontrol reconfigure >/dev/null 2>&1 || true
  else
    /usr/sbin/slurmctld
    wait_for 30 slurmctld sh -c 'scontrol ping | grep -q UP' || die "slurmctld did not start"
    log "slurmctld started (pid $(cat "$dir/run/slurmctld.pid"))"
  fi
  for i in $(seq 1 "$nodes"); do
    alive "$dir/run/slurmd-node$i.pid" "slurmd -N node$i" || /usr/sbin/slurmd -N "node$i"
  done
  wait_for 60 "$nodes idle nodes" idle_nodes || {
    sinfo -N -l >&2
    die "nodes did not become idle"
  }
  log "cluster up: $(sinfo -h -N -o '%N:%T' | tr '\n' ' ')— now: . $dir/env.sh"
}

down() {
  local f pid
  if alive "$dir/run/slurmctld.pid" slurmctld; then
    squeue -h -o '%A' 2>/dev/null | xargs -r scancel 2>/dev/null || true
    wait_for 30 "the queue to drain" sh -c '[ -z "$(squeue -h 2>/dev/null)" ]' || true
  fi
  for f in "$dir"/run/slurmd-*.pid; do [ -e "$f" ] && stop_pidfile "$f" slurmd; done
  # Stray step daemons: ours carry our SLURM_CONF.
  for pid in $(ls /proc | grep -E '^[0-9]+$'); do
    tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q '^slurmstepd' || continue
    tr '\0' '\n' 2>/dev/null <"/proc/$pid/environ" | grep -qx "SLURM_CONF=$conf" || continue
    log "stopping stray slurmstepd $pid"
    stop_pid "$pid"
  done
  stop_pidfile "$dir/run/slurmctld.pid" slurmctld
  stop_pidfile "$dir/run/slurmdbd.pid" slurmdbd
  stop_pidfile "$dir/run/mysql/mysqld.pid" mariadbd
  stop_pidfile "$dir/run/munge/munged.pid" munged
  log "down (logs kept in $dir/log)"
}

status() {
  local f up=1
  for f in "$dir"/run/*.pid "$dir"/run/*/*.pid; do
    [ -e "$f" ] || continue
    if alive "$f" ""; then echo "$(basename "$f" .pid): pid $(cat "$f") running"
    else echo "$(basename "$f" .pid): pid $(cat "$f") dead"; up=0; fi
  done
  if alive "$dir/run/slurmctld.pid" slurmctld; then sinfo -N -o '%N %T %c %G'; else up=0; fi
  [ "$up" = 1 ]
}

case $cmd in
up) up ;;
down) down ;;
status) status ;;
*) die "usage: $0 up|down|status" ;;
esac
