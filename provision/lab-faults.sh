# shellcheck shell=bash disable=SC2154 # run, names, addrs, netns, ...: set by provision/lab, which sources this
# Fault-drill hooks of the lab (issue 9), sourced by provision/lab: one guest at a time, its disk
# (the overlay's upper directory) kept, so a guest powered off and booted again has the state it
# had, as after a real power cycle. `provision/lab up` is unchanged: from all-stopped it still
# starts every guest from the pristine root.
#
#   link NODE down|up   the guest's veth (vb-NODE, inside the lab namespace) down or up:
#                       a network partition of that node, nothing else changes
#   stop NODE           clean power-off (SIGTERM to its own systemd-nspawn, bounded)
#   kill NODE           hard power-off: SIGKILL to the guest's init, which ends its whole PID
#                       namespace at once (no shutdown, no flush by the guest)
#   start NODE          boot a stopped guest again on its existing disk (bounded)

fault_lock() { # the lab lock, as `up` and `down` take it: no drill step runs in the middle of those
  mkdir -p "$run"
  exec 9>"$run/lock"
  flock -w 120 9 || die "another provision/lab command holds $run/lock"
}

node_address() { # node_address NAME: its address from the config, or die naming the nodes
  local i
  for i in "${!names[@]}"; do
    [ "${names[$i]}" = "$1" ] && { printf '%s\n' "${addrs[$i]}"; return 0; }
  done
  die "no node '$1' in $config (nodes: ${names[*]})"
}

fault_prepare() { # fault_prepare VERB NODE: root, config read, NODE known
  need_root "$1"
  load_config
  node_address "$2" >/dev/null
}

cmd_link() {
  if [ $# -ne 2 ] || [[ $2 != up && $2 != down ]]; then usage; fi
  local name=$1 state=$2 veth=vb-$1
  fault_prepare link "$name"
  nspawn_pid "$name" >/dev/null || die "guest $name is not running (provision/lab up)"
  # systemd-nspawn --network-bridge names the host side of the guest's veth vb-MACHINE (lab node
  # names have at most 11 characters, so the name is never shortened).
  ip -n "$netns" link show "$veth" >/dev/null 2>&1 || die "no link $veth in namespace $netns"
  ip -n "$netns" link set "$veth" "$state"
  say "link $veth of $name: $state"
}

cmd_stop() {
  [ $# -eq 1 ] || usage
  fault_prepare stop "$1"
  fault_lock
  nspawn_pid "$1" >/dev/null || die "guest $1 is not running"
  poweroff_guests "$1"
  rm -f "$run/$1.pid"
}

cmd_kill() {
  [ $# -eq 1 ] || usage
  local name=$1 pid gpid deadline
  fault_prepare kill "$name"
  fault_lock
  pid=$(nspawn_pid "$name") || die "guest $name is not running"
  gpid=$(init_pid "$name") || die "guest $name has no init process yet"
  say "hard power-off of $name: SIGKILL to its init $gpid"
  kill -KILL "$gpid"
  deadline=$(($(date +%s) + 30))
  while kill -0 "$pid" 2>/dev/null; do
    [ "$(date +%s)" -lt "$deadline" ] || die "systemd-nspawn $pid of $name still runs 30 s after its init was killed"
    sleep 0.2
  done
  rm -f "$run/$name.pid"
  say "$name is off"
}

cmd_start() {
  [ $# -eq 1 ] || usage
  local name=$1 addr cg
  fault_prepare start "$name"
  addr=$(node_address "$name")
  fault_lock
  nspawn_pid "$name" >/dev/null && die "guest $name already runs"
  [ -d "$guests/$name/upper" ] || die "guest $name has no disk yet (provision/lab up first)"
  [ -e "/run/netns/$netns" ] || die "the lab's namespace $netns is gone (provision/lab up)"
  # The guest's previous cgroups are empty now but still there, and cgroup v2 refuses a process
  # in a group with children: remove them, as `down` does for every guest.
  while read -r cg; do
    [ -d "$cg/$name" ] && find "$cg/$name" -depth -type d -exec rmdir {} + 2>/dev/null
    [ ! -d "$cg/$name" ] || die "cgroup $cg/$name still holds processes"
  done < <(cgroup_bases)
  local t0
  t0=$(now)
  start_guest "$name" "$addr"
  wait_guest "$name" "$addr" $(($(date +%s) + boot_timeout))
  say "$name booted on its existing disk in $(since "$t0") s"
}
