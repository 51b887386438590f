#!/usr/bin/env bash
# A throwaway one-host Slurm cluster (munged + slurmctld + slurmd) in DIR, for
# trying the sbatch scripts on a laptop and for the project's Slurm test. Run
# as root, with Debian's slurm-wlm and munge installed. Nothing outside DIR is
# touched: its own munge key and socket, its own ports, state and pid files.
#   one-host-cluster.sh start DIR CTLD_PORT SLURMD_PORT   then: export SLURM_CONF=DIR/slurm.conf
#   one-host-cluster.sh stop DIR                           cancels its jobs, stops the daemons by their pid files
# The node offers the machine's CPUs with OverSubscribe=FORCE, so a step may
# run more tasks than CPUs (srun --overcommit).
set -euo pipefail
cmd=${1:?usage: one-host-cluster.sh start DIR CTLD_PORT SLURMD_PORT | stop DIR}
dir=${2:?the cluster folder}

stop() {
  # Jobs first: their slurmstepd, srun and tasks outlive the daemons (a test
  # that failed mid-job would leave them running).
  if [[ -s $dir/slurmctld.pid ]] && kill -0 "$(cat "$dir/slurmctld.pid")" 2>/dev/null; then
    export SLURM_CONF="$dir/slurm.conf"
    scancel --quiet --partition=test 2>/dev/null || true
    for _ in $(seq 50); do
      [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break
      sleep 0.2
    done
  fi
  for daemon in slurmd slurmctld munged; do
    local pidfile="$dir/$daemon.pid"
    [[ -s $pidfile ]] || continue
    local pid
    pid=$(cat "$pidfile")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$pidfile"
  done
}

start() {
  local ctld_port=${3:?the slurmctld port} slurmd_port=${4:?the slurmd port}
  local host cpus
  host=$(hostname -s)
  cpus=$(nproc --all)
  mkdir -p "$dir/state" "$dir/spool"
  dd if=/dev/urandom of="$dir/munge.key" bs=1024 count=1 status=none
  chmod 700 "$dir"
  chmod 400 "$dir/munge.key"
  # munged refuses keys and sockets in group- or world-writable folders.
  munged --force --key-file="$dir/munge.key" --socket="$dir/munge.socket" \
    --pid-file="$dir/munged.pid" --log-file="$dir/munged.log" --seed-file="$dir/munged.seed"
  cat >"$dir/slurm.conf" <<CONF
ClusterName=lorafleet-test
SlurmctldHost=$host(127.0.0.1)
SlurmctldPort=$ctld_port
SlurmdPort=$slurmd_port
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge.socket
SlurmUser=root
SlurmdUser=root
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/slurmctld.pid
SlurmdPidFile=$dir/slurmd.pid
SlurmctldLogFile=$dir/slurmctld.log
SlurmdLogFile=$dir/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MessageTimeout=30
KillWait=5
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=test Nodes=$host Default=YES MaxTime=INFINITE State=UP OverSubscribe=FORCE
CONF
  export SLURM_CONF="$dir/slurm.conf"
  slurmctld -f "$SLURM_CONF"
  slurmd -f "$SLURM_CONF" -N "$host"
  # Ready when the node accepts jobs.
  for _ in $(seq 100); do
    if sinfo -h -o '%T' 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then return 0; fi
    sleep 0.2
  done
  echo "one-host-cluster: the node did not come up in 20 s; see $dir/slurmctld.log and $dir/slurmd.log" >&2
  sinfo >&2 || true
  return 1
}

case $cmd in
  start) start "$@" || { stop; exit 1; } ;;
  stop) stop ;;
  *) echo "one-host-cluster.sh: unknown command $cmd (start or stop)" >&2; exit 2 ;;
esac
