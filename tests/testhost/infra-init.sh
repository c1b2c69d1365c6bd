#!/bin/sh
# infra-init.sh: PID 1 of a test cluster's "infra" namespaces (pid, net, mount, uts).
# It owns the bridge the hosts plug into and a tmpfs for etcd's data; etcd itself is
# started next to it with nsenter so it can be restarted alone. Embedded and run by
# flt_tests::testhost:
#
#   infra-init.sh launch  -> enters the infra cgroup, then unshare --pid --fork ... -- infra-init.sh ns
#   infra-init.sh ns      -> reports its global PID, sets up br0 and the tmpfs, waits
#
# Environment: FLT_TH_STATE (cluster state dir), FLT_TH_CG (cgroup dir for infra),
# FLT_TH_SUBNET (first three octets, e.g. 10.213.0).
set -eu

if [ "${1:-}" = launch ]; then
	echo $$ >"$FLT_TH_CG/cgroup.procs"
	exec unshare --pid --fork --kill-child --mount --propagation private --uts --net -- "$0" ns
fi

[ "$$" -eq 1 ] || { echo "infra-init: not PID 1" >&2; exit 1; }
read -r global_pid _rest </proc/self/stat
mount --make-rprivate /
# etcd's data on a tmpfs of this mount namespace: fsync is free, the data survives an
# etcd restart and disappears with the cluster.
mkdir -p "$FLT_TH_STATE/etcd-data"
mount -t tmpfs -o mode=0700,size=1g flt-th-etcd "$FLT_TH_STATE/etcd-data"
hostname flt-test-infra
ip link set lo up
# The bridge exists only in this network namespace, and no namespace has a default
# route: nothing can reach a real network and nothing is left behind on the VM.
# A fixed MAC: a bridge without one takes the lowest MAC of its ports, so killing the host
# that owned it would change the MAC of etcd's address and cut every other host off from etcd
# until their ARP entries go stale (seen: 3 s, longer than agent_ttl in tests).
ip link add br0 address 02:00:00:00:00:01 type bridge
ip link set br0 type bridge stp_state 0 forward_delay 0
ip addr add "$FLT_TH_SUBNET.1/24" dev br0
ip link set br0 up
echo "$global_pid" >"$FLT_TH_STATE/infra.pid.new"
mv "$FLT_TH_STATE/infra.pid.new" "$FLT_TH_STATE/infra.pid"
trap 'exit 0' TERM INT
# Stay alive and reap whatever gets re-parented to us.
while :; do
	sleep 3600 &
	wait $! || true
done
