#!/usr/bin/env bash
# A one-node Slurm cluster on localhost, to try (and test) lamarck's Slurm executor on a
# laptop or in CI: installs slurm-wlm and munge from Debian's packages, generates a
# slurm.conf for this machine in a state folder, starts munged, slurmctld and slurmd.
#
#   tools/slurm/local-cluster.sh up     # idempotent: does nothing when it already runs
#   tools/slurm/local-cluster.sh status
#   tools/slurm/local-cluster.sh down   # stops the daemons, removes the state folder
#
# Needs root (apt-get, munge key, slurmd). State: $LAMARCK_SLURM_DIR (default /tmp/lamarck-slurm).
set -euo pipefail
DIR=${LAMARCK_SLURM_DIR:-/tmp/lamarck-slurm}
CONF=$DIR/slurm.conf
export SLURM_CONF=$CONF

running() { [ -f "$DIR/$1.pid" ] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

up() {
  if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y slurm-wlm munge >/dev/null
  fi
  mkdir -p "$DIR"/{spool,state,log,munge}
  if running slurmctld && running slurmd && running munged && sinfo -h >/dev/null 2>&1; then
    echo "slurm: already up (SLURM_CONF=$CONF)"; return
  fi
  down_daemons
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 512 ))
  # munge: a key of our own, its socket in the state folder
  [ -f "$DIR/munge/munge.key" ] || { dd if=/dev/urandom of="$DIR/munge/munge.key" bs=1024 count=1 2>/dev/null; }
  chmod 700 "$DIR/munge"; chmod 400 "$DIR/munge/munge.key"
  munged --force --key-file="$DIR/munge/munge.key" --socket="$DIR/munge/munge.socket" \
    --pid-file="$DIR/munged.pid" --log-file="$DIR/log/munged.log" --seed-file="$DIR/munge/seed"
  cat > "$CONF" <<CONF
ClusterName=lamarck-local
SlurmctldHost=$host
AuthType=auth/munge
AuthInfo=socket=$DIR/munge/munge.socket
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$DIR/state
SlurmdSpoolDir=$DIR/spool
SlurmctldPidFile=$DIR/slurmctld.pid
SlurmdPidFile=$DIR/slurmd.pid
SlurmctldLogFile=$DIR/log/slurmctld.log
SlurmdLogFile=$DIR/log/slurmd.log
SlurmctldPort=${LAMARCK_SLURMCTLD_PORT:-6817}
SlurmdPort=${LAMARCK_SLURMD_PORT:-6818}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
KillWait=5
InactiveLimit=0
MinJobAge=300
NodeName=$host CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=debug Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE:4
CONF
  slurmctld -f "$CONF"
  slurmd -f "$CONF"
  for _ in $(seq 1 60); do
    if sinfo -h -o "%T" 2>/dev/null | grep -qE "idle|mixed|alloc"; then
      echo "slurm: up (SLURM_CONF=$CONF; export it to use sbatch/squeue here)"; return
    fi
    sleep 0.5
  done
  echo "slurm: the node did not come up; logs in $DIR/log" >&2
  sinfo >&2 || true
  tail -n 20 "$DIR"/log/*.log >&2 || true
  exit 1
}

down_daemons() {
  for d in slurmd slurmctld munged; do
    if running "$d"; then kill "$(cat "$DIR/$d.pid")" 2>/dev/null || true; fi
  done
  for d in slurmd slurmctld munged; do
    for _ in $(seq 1 40); do running "$d" || break; sleep 0.25; done
    rm -f "$DIR/$d.pid"
  done
}

case "${1:-}" in
  up) up ;;
  down) down_daemons; rm -rf "$DIR"; echo "slurm: down" ;;
  status) if running slurmctld && running slurmd; then sinfo; else echo "slurm: down"; exit 1; fi ;;
  *) echo "usage: $0 {up|down|status}" >&2; exit 2 ;;
esac
