#!/bin/sh
# host-init.sh: turns a fresh set of namespaces into one flt test host and execs
# systemd as its PID 1. Written for flt_tests::testhost (tests/src/testhost/), which
# embeds this file and runs it as:
#
#   host-init.sh launch   (plain child of the harness)
#     -> enters the host's "supervisor" cgroup, then
#        unshare --pid --fork --kill-child --mount --propagation private --uts --ipc --net
#   host-init.sh ns       (PID 1 of the new PID namespace, VM's /proc still mounted)
#     -> reports its global PID, moves into the "payload" cgroup, unshare --cgroup
#   host-init.sh root     (PID 1, own cgroup namespace rooted at "payload")
#     -> copy-on-write root, private API filesystems, pivot_root, checks, exec systemd
#
# Every mount made here exists only in the host's own mount namespace, so the kernel
# drops all of them when the host's last process dies; nothing is mounted on the VM.
#
# Environment (set by the harness):
#   FLT_TH_NAME        host name (h1, h2, ...)        FLT_TH_HOSTNAME  hostname inside
#   FLT_TH_DIR         per-host state dir on disk     FLT_TH_MACHINE_ID 32 hex chars
#   FLT_TH_CG          the host's cgroup dir (VM view; has supervisor/ and payload/)
#   FLT_TH_HOSTS_FILE  content for /etc/hosts         FLT_TH_BINDS  lines "SRC DST ro|rw"
#   FLT_TH_UPPER_SIZE  tmpfs size for the upper layer
set -eu

stage=${1:-}
say() { echo "host-init[$FLT_TH_NAME/$stage]: $*" >&2; }
fail() { say "refusing to continue: $*"; exit 1; }   # as PID 1 this ends the namespace

if [ "$stage" = launch ]; then
	# Enter the supervisor cgroup before any namespace exists: from here on every
	# process of this host lives below $FLT_TH_CG and can be swept by cgroup.kill.
	echo $$ >"$FLT_TH_CG/supervisor/cgroup.procs"
	exec unshare --pid --fork --kill-child --mount --propagation private --uts --ipc --net \
		-- "$0" ns
fi

[ "$$" -eq 1 ] || fail "stage $stage must run as PID 1 of a new PID namespace (pid $$)"

if [ "$stage" = ns ]; then
	# /proc is still the VM's procfs: field 1 of /proc/self/stat is our global PID,
	# which is how the harness finds this host without races.
	read -r global_pid _rest </proc/self/stat
	echo "$global_pid" >"$FLT_TH_DIR/pid.new"
	mv "$FLT_TH_DIR/pid.new" "$FLT_TH_DIR/pid"
	# The supervisor (our unshare parent) stays in supervisor/; systemd gets payload/
	# to itself, as the root of its own cgroup namespace.
	echo 0 >"$FLT_TH_CG/payload/cgroup.procs"
	exec unshare --cgroup -- "$0" root
fi

[ "$stage" = root ] || fail "unknown stage '$stage'"

H=$FLT_TH_DIR
R=$H/root
RW=$H/rw
mount --make-rprivate /

# 1. Copy-on-write root. The upper layer needs a filesystem other than the lower one
#    (overlayfs rejects overlapping layers); a tmpfs also makes it vanish with the host.
mount -t tmpfs -o "mode=0755,size=$FLT_TH_UPPER_SIZE" "flt-th-$FLT_TH_NAME" "$RW"
mkdir -p "$RW/upper" "$RW/work"
U=$RW/upper
mkdir -p "$U/etc/systemd/system" "$U/etc/systemd/journald.conf.d" "$U/etc/systemd/system.conf.d"
echo "$FLT_TH_MACHINE_ID" >"$U/etc/machine-id"
echo "$FLT_TH_HOSTNAME" >"$U/etc/hostname"
printf '%s\n' "$FLT_TH_HOSTS_FILE" >"$U/etc/hosts"

# Boot target: only sysinit, sockets and the system bus. basic.target would pull the
# VM's timers and multi-user.target the VM's enabled services.
cat >"$U/etc/systemd/system/flt-test-host.target" <<'UNIT'
[Unit]
Description=flt test host
Requires=sysinit.target sockets.target dbus.socket
Wants=dbus.service
After=sysinit.target sockets.target dbus.socket dbus.service
AllowIsolate=yes
UNIT

# Masked units: hardware, clock, kernel-tunable and update-on-boot units, plus the VM's
# own daemons in case something isolates multi-user.target inside a host.
for unit in \
	systemd-sysctl.service systemd-modules-load.service kmod-static-nodes.service \
	systemd-binfmt.service proc-sys-fs-binfmt_misc.automount proc-sys-fs-binfmt_misc.mount \
	systemd-timesyncd.service systemd-random-seed.service systemd-pstore.service \
	systemd-repart.service systemd-firstboot.service systemd-sysusers.service \
	systemd-hwdb-update.service ldconfig.service systemd-journal-catalog-update.service \
	systemd-update-done.service systemd-udevd.service systemd-udev-trigger.service \
	systemd-udev-settle.service sys-kernel-debug.mount sys-kernel-tracing.mount \
	sys-kernel-config.mount sys-fs-fuse-connections.mount dev-hugepages.mount \
	systemd-journald-audit.socket getty.target console-getty.service getty@.service \
	serial-getty@.service postgresql.service etcd.service ssh.service cron.service \
	e2scrub_reap.service apt-daily.timer apt-daily-upgrade.timer man-db.timer \
	e2scrub_all.timer fstrim.timer dpkg-db-backup.timer logrotate.timer \
	systemd-tmpfiles-clean.timer; do
	ln -sf /dev/null "$U/etc/systemd/system/$unit"
done

# Persistent journal on the VM's disk (bind below): readable after a SIGKILL.
cat >"$U/etc/systemd/journald.conf.d/flt-test-host.conf" <<'CONF'
[Journal]
Storage=persistent
SyncIntervalSec=1s
RateLimitBurst=0
SystemMaxUse=64M
ForwardToSyslog=no
ForwardToWall=no
CONF
cat >"$U/etc/systemd/system.conf.d/flt-test-host.conf" <<'CONF'
[Manager]
ShowStatus=no
LogColor=no
DefaultTimeoutStopSec=10s
CONF

mount -t overlay "flt-th-$FLT_TH_NAME-root" -o "lowerdir=/,upperdir=$U,workdir=$RW/work" "$R"

# 2. API filesystems of our own.
mount -t proc -o nosuid,nodev,noexec proc "$R/proc"
# Read-only /proc/sys: systemd and systemd-sysctl would otherwise change the VM kernel's
# global settings (fs.file-max, fs.nr_open, sysctl.d).
mount --bind "$R/proc/sys" "$R/proc/sys"
mount -o remount,bind,ro,nosuid,nodev,noexec "$R/proc/sys"
if [ -e "$R/proc/sysrq-trigger" ]; then mount --bind /dev/null "$R/proc/sysrq-trigger"; fi
# A boot id per boot, so that each host start is its own boot in the journal.
cat /proc/sys/kernel/random/uuid >"$RW/boot_id"
mount --bind "$RW/boot_id" "$R/proc/sys/kernel/random/boot_id"
mount -o remount,bind,ro "$R/proc/sys/kernel/random/boot_id"
mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$R/sys"
mount -t cgroup2 -o rw,nosuid,nodev,noexec cgroup2 "$R/sys/fs/cgroup"

# Our own small /dev: the VM's has watchdogs, block devices and the real console.
mount -t tmpfs -o mode=0755,nosuid,size=4m "flt-th-dev" "$R/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9 tty:5:0; do
	IFS=: read -r node_name major minor <<NODE
$node
NODE
	mknod -m 0666 "$R/dev/$node_name" c "$major" "$minor"
done
mkdir -p "$R/dev/pts" "$R/dev/shm" "$R/dev/mqueue"
mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5,nosuid,noexec devpts "$R/dev/pts"
ln -s pts/ptmx "$R/dev/ptmx"
mount -t tmpfs -o mode=1777,nosuid,nodev "flt-th-shm" "$R/dev/shm"
ln -s /proc/self/fd "$R/dev/fd"
ln -s /proc/self/fd/0 "$R/dev/stdin"
ln -s /proc/self/fd/1 "$R/dev/stdout"
ln -s /proc/self/fd/2 "$R/dev/stderr"
touch "$R/dev/console"
mount --bind "$H/console.log" "$R/dev/console"

# Private /run and /tmp: systemd-tmpfiles --remove --boot must never see the VM's.
mount -t tmpfs -o mode=0755,nosuid,nodev,size=256m "flt-th-run" "$R/run"
mount -t tmpfs -o mode=1777,nosuid,nodev,size=256m "flt-th-tmp" "$R/tmp"
mkdir -p "$R/var/log/journal"
mount --bind "$H/journal" "$R/var/log/journal"

# 3. Caller's bind mounts (directories, e.g. cargo's target dir, read-only).
if [ -n "${FLT_TH_BINDS:-}" ]; then
	printf '%s\n' "$FLT_TH_BINDS" | while read -r src dst mode; do
		[ -n "$src" ] || continue
		[ -e "$src" ] || fail "bind source $src does not exist"
		case "$dst" in
		/ | /tmp | /tmp/* | /var/tmp | /var/tmp/* | /run | /run/* | /dev | /dev/* | /proc | /proc/* | /sys | /sys/* | /var/log/journal*)
			fail "bind target $dst is owned by the host's systemd" ;;
		esac
		if [ -d "$src" ]; then
			mkdir -p "$R$dst"
		else
			mkdir -p "$(dirname "$R$dst")"
			touch "$R$dst"
		fi
		mount --bind "$src" "$R$dst"
		if [ "$mode" != rw ]; then mount -o remount,bind,ro "$R$dst"; fi
	done
fi

# 4. Switch root for good (pivot_root, so the VM's root leaves our mount table).
cd "$R"
mkdir -p .flt-th-old-root
pivot_root . .flt-th-old-root
umount -l /.flt-th-old-root
rmdir /.flt-th-old-root
cd /

# 5. Safety checks: if any of these fails, systemd would act on the VM itself.
[ "$(stat -f -c %T /)" = overlayfs ] || fail "/ is not the copy-on-write overlay"
[ "$(stat -f -c %T /tmp)" = tmpfs ] || fail "/tmp is not a private tmpfs"
[ "$(stat -f -c %T /run)" = tmpfs ] || fail "/run is not a private tmpfs"
if [ -w /proc/sys/kernel/hostname ]; then fail "/proc/sys is writable"; fi
if [ -e /dev/watchdog ]; then fail "/dev/watchdog is visible"; fi
[ "$$" -eq 1 ] || fail "not PID 1"

hostname "$FLT_TH_HOSTNAME"

# 6. systemd as a container's PID 1, without the capabilities for modules, the clock,
#    raw I/O, audit, the kernel log, reboot, mknod and process accounting.
exec </dev/null >/dev/console 2>&1
exec setpriv --bounding-set -sys_module,-sys_time,-sys_rawio,-wake_alarm,-audit_control,-audit_read,-syslog,-sys_boot,-mknod,-sys_pacct -- \
	env -i container=flt-test-host container_host_name="$FLT_TH_NAME" \
	PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8 \
	/lib/systemd/systemd --unit=flt-test-host.target --show-status=false --log-color=false
