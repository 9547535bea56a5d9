#!/usr/bin/env bash
# An all-in-one OpenStack (Debian 12's Zed packages) inside network namespace nbcloud-os,
# for nbcloud's OpenStack test tier.  Idempotent: `up` installs what is missing, configures,
# db-syncs once, starts what is not running and creates the cloud's first objects once.
#
#   aio.sh up          install, configure, start, bootstrap; prints where clouds.yaml is
#   aio.sh down        stop every process of the cloud, remove the namespaces
#   aio.sh status      what runs
#   aio.sh usage [S]   memory (PSS/RSS) and CPU of the cloud's processes over S seconds
#   aio.sh exec CMD..  run CMD inside the cloud's namespaces (e.g. `openstack`, `ssh`)
#   aio.sh smoke       boot the tiny image through Nova, reach it by a floating IP
#                      (--debian: nbcloud's Debian image with cloud-init; --keep)
#   aio.sh purge       down, then forget all state (databases, images, keys, configs)
#
# Every daemon runs as root inside two namespaces of ours: the network namespace
# nbcloud-os (services on 127.0.0.1, the provider bridge nbcos-br-ex) and a mount namespace
# held at /run/nbcloud-os/ns/mnt, where /sys belongs to the network namespace, the cgroup
# hierarchies are mounted again, and /etc/libvirt, /run/libvirt, /var/lib/libvirt,
# /var/cache/libvirt, /var/log/libvirt and /run/netns are folders of our own.  So Nova's
# libvirtd never meets the host's, and Neutron's qrouter-/qdhcp- namespaces never show
# on the host.  Nothing leaves the namespace: no veth to the host, no route out.
set -euo pipefail
# The services are Debian's: never a pyenv or virtualenv python first on PATH.
export PATH=/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin
export LC_ALL=C.UTF-8
HERE=$(cd "$(dirname "$0")" && pwd)

NS=nbcloud-os
STATE=/var/lib/nbcloud-os
LOGDIR=/var/log/nbcloud-os
RUN=/run/nbcloud-os
ETC=/etc/nbcloud-os
MNT=$RUN/ns/mnt
PUB_BRIDGE=nbcos-br-ex
PUB_GW=172.24.4.1
PUB_CIDR=172.24.4.0/24
TUN_DEV=nbcos-tun0   # carries VXLAN's local_ip: a bridge without ports (no dummy driver here)
TUN_IP=172.24.5.1
CLOUDS_YAML=$ETC/clouds.yaml

export OS_CLIENT_CONFIG_FILE=$CLOUDS_YAML

# shellcheck source=config.sh
source "$HERE/config.sh"
# shellcheck source=storage.sh
source "$HERE/storage.sh"
# shellcheck source=orchestration.sh
source "$HERE/orchestration.sh"
# shellcheck source=dns.sh
source "$HERE/dns.sh"

T0=$(date +%s.%N)
phase_t=$T0
phase() { # NAME: close the previous phase (with its time), open NAME
	local now
	now=$(date +%s.%N)
	[ -z "${PHASE:-}" ] || printf 'aio: %-10s %6.1f s\n' "$PHASE" "$(echo "$now - $phase_t" | bc)"
	PHASE=$1 phase_t=$now
}
say() { echo "aio: $*"; }
die() { echo "aio: $*" >&2; exit 1; }

# --- namespaces ---------------------------------------------------------------------

nsx() { # run a command in the cloud's network and mount namespaces
	nsenter --net=/run/netns/$NS --mount=$MNT -- "$@"
}

ns_ready() { [ -e /run/netns/$NS ] && findmnt -rn "$MNT" >/dev/null 2>&1; }

ns_up() {
	[ -e /run/netns/$NS ] || ip netns add $NS
	ip -n $NS link set lo up
	ip -n $NS link show $PUB_BRIDGE >/dev/null 2>&1 ||
		ip -n $NS link add $PUB_BRIDGE type bridge
	ip -n $NS addr replace $PUB_GW/24 dev $PUB_BRIDGE
	ip -n $NS link set $PUB_BRIDGE up
	ip -n $NS link show $TUN_DEV >/dev/null 2>&1 || ip -n $NS link add $TUN_DEV type bridge
	ip -n $NS addr replace $TUN_IP/32 dev $TUN_DEV
	ip -n $NS link set $TUN_DEV up
	# the security-group rules of the Linux bridge agent see bridged traffic.  No
	# forwarding here and no default route: routers live in their own qrouter- namespaces,
	# and nothing from the guests can go past this namespace.
	ip netns exec $NS sysctl -qw net.bridge.bridge-nf-call-iptables=1 \
		net.bridge.bridge-nf-call-ip6tables=1 net.ipv4.ip_forward=0
	if ! findmnt -rn "$MNT" >/dev/null 2>&1; then ns_mount; fi
	# our /usr/local/sbin there: the ebtables that Neutron's agent can live with (see sbin/)
	mkdir -p $STATE/sbin
	put $STATE/sbin/ebtables <"$HERE/sbin/ebtables"
	chmod 755 $STATE/sbin/ebtables
	nsx findmnt -rn /usr/local/sbin >/dev/null 2>&1 || nsx mount --bind $STATE/sbin /usr/local/sbin
}

ns_mount() { # the mount namespace, held by the file $MNT
	mkdir -p $RUN/ns $RUN/netns $RUN/libvirt $STATE/libvirt/{etc,lib,cache,log} $ETC/ceph
	# A namespace file can only be bound under a mount that does not propagate.
	if ! findmnt -rn $RUN/ns >/dev/null 2>&1; then
		mount --bind $RUN/ns $RUN/ns
		mount --make-private $RUN/ns
	fi
	: >"$MNT"
	libvirt_conf
	# cgroup mounts as "fstype path options" lines, parents first (as nbcloud/nsexec.py)
	awk '$2 ~ "^/sys/fs/cgroup(/|$)" && $3 ~ /^(tmpfs|cgroup|cgroup2)$/ {
		print gsub("/", "/", $2), $3, $2, $4 }' /proc/self/mounts | sort -n | cut -d' ' -f2- \
		>$RUN/cgroup-mounts
	nsenter --net=/run/netns/$NS unshare --mount="$MNT" --propagation slave \
		bash -euc '
		umount -l /sys
		mount -t sysfs sysfs /sys
		while read -r fstype path options; do
			mkdir -p "$path"
			mount -t "$fstype" -o "$options" "$fstype" "$path"
		done <'"$RUN"'/cgroup-mounts
		for pair in '"$STATE"'/libvirt/etc:/etc/libvirt '"$RUN"'/libvirt:/run/libvirt \
				'"$STATE"'/libvirt/lib:/var/lib/libvirt '"$STATE"'/libvirt/cache:/var/cache/libvirt \
				'"$STATE"'/libvirt/log:/var/log/libvirt '"$RUN"'/netns:/run/netns \
				'"$ETC"'/ceph:/etc/ceph; do
			mkdir -p "${pair#*:}"
			mount --bind "${pair%%:*}" "${pair#*:}"
		done
		# libvirtd probes every qemu-system-* it finds (25 of them, a minute under this
		# load) before it answers Nova: here it finds the x86 ones only
		for f in /usr/bin/qemu-system-*; do
			case "${f##*/}" in qemu-system-x86_64 | qemu-system-i386) ;;
			*) mount --bind /dev/null "$f" ;;
			esac
		done'
}

ns_pids() { # every process of the cloud
	# In the cloud's mount or network namespace; in one of Neutron's qrouter-/qdhcp-
	# namespaces (dnsmasq, haproxy: `ip netns exec` gave them a mount namespace of their
	# own); or naming the cloud's state or configuration (one whose namespace is gone).
	local inos=" " p f
	if findmnt -rn "$MNT" >/dev/null 2>&1; then
		inos+="$(nsenter --mount="$MNT" stat -L -c m%i /proc/self/ns/mnt) "
		for f in $RUN/netns/*; do
			[ -e "$f" ] && inos+="n$(nsenter --mount="$MNT" stat -L -c %i "/run/netns/${f##*/}" 2>/dev/null) "
		done
	fi
	[ -e /run/netns/$NS ] && inos+="n$(stat -L -c %i /run/netns/$NS) "
	for p in /proc/[0-9]*; do
		case "$inos" in
		*" m$(stat -L -c %i "$p/ns/mnt" 2>/dev/null) "* | *" n$(stat -L -c %i "$p/ns/net" 2>/dev/null) "*)
			echo "${p#/proc/}"
			continue ;;
		esac
		case "$(tr '\0' ' ' 2>/dev/null <"$p/cmdline")" in
		*"$STATE/"* | *"$ETC/"*) echo "${p#/proc/}" ;;
		esac
	done
	return 0
}

# --- daemons ------------------------------------------------------------------------

running() { # NAME: is the daemon of that pid file alive?
	local pid
	[ -s "$RUN/pids/$1.pid" ] || return 1
	read -r pid <"$RUN/pids/$1.pid"
	kill -0 "$pid" 2>/dev/null
}

stale() { # NAME COMMAND...: has a configuration file of NAME changed since it started?
	local pidfile=$RUN/pids/$1.pid word path
	shift
	for word in "$@" ${WATCH:-}; do
		path=${word#*=}
		case "$path" in "$ETC"/* | "$STATE"/libvirt/etc*) ;; *) continue ;; esac
		[ -n "$(find "$path" -newer "$pidfile" -type f 2>/dev/null | head -1)" ] && return 0
	done
	return 1
}

start() { # NAME COMMAND...: start COMMAND in the namespaces unless NAME runs
	# (restarted when a file it reads changed: those named in COMMAND and in $WATCH)
	local name=$1 pid i
	shift
	if running "$name"; then
		stale "$name" "$@" || return 0
		read -r pid <"$RUN/pids/$name.pid"
		say "restarting $name (its configuration changed)"
		kill "$pid" 2>/dev/null || true
		for i in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$pid" 2>/dev/null || true
	fi
	mkdir -p $RUN/pids
	say "starting $name"
	# exec all the way down (subshell, nsenter, setsid): the pid is the daemon's own;
	# setsid: the daemon outlives this shell and its terminal
	(exec nsenter --net=/run/netns/$NS --mount=$MNT -- setsid "$@" </dev/null \
		>>"$LOGDIR/$name.out" 2>&1) &
	echo $! >"$RUN/pids/$name.pid"
}

wait_for() { # WHAT SECONDS COMMAND...: until COMMAND succeeds
	local what=$1 limit=$2 i=0
	shift 2
	until "$@" >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -le $((limit * 5)) ] || die "$what did not come up within $limit s (logs: $LOGDIR)"
		sleep 0.2
	done
}

http_ok() { # URL: answers with anything but a connection error or a 5xx
	local code
	code=$(nsx curl -s -o /dev/null -m 5 -w '%{http_code}' "$1") || return 1
	[ "$code" != 000 ] && [ "${code:0:1}" != 5 ]
}

DAEMONS=(mysqld rabbitmq memcached keystone glance-api placement-api nova-api
	nova-conductor nova-scheduler neutron-server libvirtd nova-compute
	neutron-linuxbridge-agent neutron-dhcp-agent neutron-l3-agent neutron-metadata-agent
	ceph-mon ceph-mgr ceph-osd cinder-api cinder-scheduler cinder-volume heat-engine heat-api
	named designate-central designate-worker designate-producer designate-mdns designate-api)

start_base() {
	local rabbit_ran=
	running rabbitmq && ! stale rabbitmq $ETC/rabbitmq/rabbitmq-env.conf $ETC/rabbitmq/rabbitmq.conf &&
		rabbit_ran=1
	start mysqld mysqld --defaults-file=$ETC/my.cnf
	WATCH=$ETC/rabbitmq/rabbitmq.conf start rabbitmq env HOME=$STATE/rabbitmq \
		RABBITMQ_CONF_ENV_FILE=$ETC/rabbitmq/rabbitmq-env.conf /usr/lib/rabbitmq/bin/rabbitmq-server
	start memcached memcached -u root -l 127.0.0.1 -p 11211 -m 32 -c 1024
	wait_for mysqld 60 nsx mysqladmin --socket=$RUN/mysqld.sock ping
	# rabbitmqctl boots an Erlang VM (1-2 s): only when the broker is starting
	[ -n "$rabbit_ran" ] || wait_for rabbitmq 90 nsx env HOME=$STATE/rabbitmq \
		RABBITMQ_CONF_ENV_FILE=$ETC/rabbitmq/rabbitmq-env.conf \
		/usr/lib/rabbitmq/bin/rabbitmqctl -q await_startup
}

uwsgi_app() { # NAME PORT WSGI-FILE ENV=VALUE: one process, a few threads, no master
	local name=$1 port=$2 file=$3 env=$4
	start "$name" env "$env" uwsgi --plugin python3 --http-socket 127.0.0.1:"$port" \
		--wsgi-file "$file" --processes 1 --threads 4 --enable-threads --lazy-apps \
		--buffer-size 65535 --die-on-term --disable-logging \
		--add-header 'Connection: close'  # http-socket closes anyway: say so, or clients reuse it
}

start_keystone() {
	uwsgi_app keystone 5000 /usr/bin/keystone-wsgi-public OS_KEYSTONE_CONFIG_DIR=$ETC/keystone
	wait_for keystone 60 http_ok http://127.0.0.1:5000/v3
}

start_control() {
	start glance-api glance-api --config-file $ETC/glance/glance-api.conf
	uwsgi_app placement-api 8778 /usr/bin/placement-api OS_PLACEMENT_CONFIG_DIR=$ETC/placement
	start nova-api nova-api --config-file $ETC/nova/nova.conf
	start nova-conductor nova-conductor --config-file $ETC/nova/nova.conf
	start nova-scheduler nova-scheduler --config-file $ETC/nova/nova.conf
	start neutron-server neutron-server --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/ml2_conf.ini
}

start_compute() {
	# --pid-file: not /run/libvirtd.pid, which the host's daemon holds
	WATCH="$STATE/libvirt/etc/libvirtd.conf $STATE/libvirt/etc/qemu.conf" start libvirtd libvirtd --pid-file $RUN/libvirtd.pid
	wait_for libvirtd 30 nsx virsh -c qemu:///system version
	start nova-compute nova-compute --config-file $ETC/nova/nova-compute.conf
	start neutron-linuxbridge-agent neutron-linuxbridge-agent --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/linuxbridge_agent.ini
	start neutron-dhcp-agent neutron-dhcp-agent --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/dhcp_agent.ini
	start neutron-l3-agent neutron-l3-agent --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/l3_agent.ini
	start neutron-metadata-agent neutron-metadata-agent --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/metadata_agent.ini
}

wait_apis() {
	wait_for glance 90 http_ok http://127.0.0.1:9292/
	wait_for placement 90 http_ok http://127.0.0.1:8778/
	wait_for nova-api 120 http_ok http://127.0.0.1:8774/
	wait_for neutron 120 http_ok http://127.0.0.1:9696/
}

choices() { # NBCOS_CINDER, NBCOS_HEAT, NBCOS_DESIGNATE: as given, else as the last up had them
	local f=$STATE/choices.env name given
	given=$(for name in NBCOS_CINDER NBCOS_HEAT NBCOS_DESIGNATE; do
		[ -z "${!name:-}" ] || echo "$name=${!name}"; done; true)
	[ ! -s $f ] || source $f
	[ -z "$given" ] || eval "$given"
	export NBCOS_CINDER=${NBCOS_CINDER:-1} NBCOS_HEAT=${NBCOS_HEAT:-1} \
		NBCOS_DESIGNATE=${NBCOS_DESIGNATE:-0}
	for name in NBCOS_CINDER NBCOS_HEAT NBCOS_DESIGNATE; do
		echo "$name=${!name}"
	done >$f
}

# --- install ------------------------------------------------------------------------

PACKAGES=(mariadb-server python3-pymysql rabbitmq-server memcached python3-memcache
	python3-pymemcache keystone python3-openstackclient placement-api glance-api
	nova-api nova-conductor nova-scheduler nova-compute nova-compute-qemu genisoimage
	neutron-server neutron-linuxbridge-agent neutron-dhcp-agent neutron-l3-agent
	neutron-metadata-agent ipset ebtables conntrack haproxy dnsmasq-base dnsmasq-utils
	uwsgi-plugin-python3 sudo curl bc qemu-utils openssh-client iputils-ping uuid-runtime
	iproute2 util-linux libvirt-daemon-system libvirt-clients qemu-system-x86 qemu-block-extra
	cinder-api cinder-scheduler cinder-volume python3-rbd python3-rados
	ceph-mon ceph-mgr ceph-osd ceph-common
	heat-api heat-engine python3-heatclient)

install_packages() {
	local missing=() made_policy= pkg
	# one dpkg-query for all: the packages it does not know print nothing
	mapfile -t missing < <(comm -23 <(printf '%s\n' "${PACKAGES[@]}" | sort -u) \
		<(dpkg-query -W -f='${Package} ${Status}\n' "${PACKAGES[@]}" 2>/dev/null |
			awk '/ install ok installed$/ { print $1 }' | sort -u))
	designate_wanted && for pkg in "${DESIGNATE_PACKAGES[@]}"; do
		dpkg-query -W -f='${Status}\n' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
			missing+=("$pkg")
	done
	[ ${#missing[@]} -gt 0 ] || return 0
	say "installing ${#missing[@]} packages (log: $LOGDIR/apt.log)"
	[ -n "$(ls /var/lib/apt/lists/ 2>/dev/null | grep -v lock)" ] ||
		apt-get -o DPkg::Lock::Timeout=900 update -q >>$LOGDIR/apt.log
	# Keep the maintainer scripts from starting the services (no systemd here anyway):
	# the cloud's daemons run inside its namespaces, started by this script.
	if [ ! -e /usr/sbin/policy-rc.d ]; then
		printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
		chmod 755 /usr/sbin/policy-rc.d
		made_policy=1
	fi
	DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=900 install -y -q \
		--no-install-recommends "${missing[@]}" >>$LOGDIR/apt.log 2>&1 ||
		{ [ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d; die "apt-get install failed: see $LOGDIR/apt.log"; }
	[ -z "$made_policy" ] || rm -f /usr/sbin/policy-rc.d
}

# --- databases ----------------------------------------------------------------------

sql() { # STATEMENTS [MYSQL-OPTIONS]
	nsx mysql --socket=$RUN/mysqld.sock -uroot "${@:2}" -e "$1"
}

db_create() { # DB USER PASSWORD
	sql "CREATE DATABASE IF NOT EXISTS \`$1\` CHARACTER SET utf8;
	     CREATE USER IF NOT EXISTS '$2'@'%' IDENTIFIED BY '$3';
	     GRANT ALL PRIVILEGES ON \`$1\`.* TO '$2'@'%';"
}

once() { # STAMP COMMAND...: run COMMAND unless STAMP says it ran for these packages
	local stamp=$STATE/stamps/$1 version
	shift
	version=$(dpkg-query -W -f='${Version}' keystone nova-common neutron-common glance-common \
		cinder-common placement-common heat-common 2>/dev/null | md5sum | cut -c1-12)
	[ "$(cat "$stamp" 2>/dev/null)" = "$version" ] && return 0
	"$@"
	mkdir -p $STATE/stamps
	echo "$version" >"$stamp"
}

sync_keystone() {
	db_create keystone keystone "$KEYSTONE_DB_PASS"
	nsx keystone-manage --config-file $ETC/keystone/keystone.conf db_sync
	nsx keystone-manage --config-file $ETC/keystone/keystone.conf fernet_setup \
		--keystone-user root --keystone-group root
	nsx keystone-manage --config-file $ETC/keystone/keystone.conf credential_setup \
		--keystone-user root --keystone-group root
}

bootstrap_keystone() {
	nsx keystone-manage --config-file $ETC/keystone/keystone.conf bootstrap \
		--bootstrap-password "$ADMIN_PASS" --bootstrap-region-id RegionOne \
		--bootstrap-admin-url http://127.0.0.1:5000/v3/ \
		--bootstrap-internal-url http://127.0.0.1:5000/v3/ \
		--bootstrap-public-url http://127.0.0.1:5000/v3/
}

sync_services() {
	db_create glance glance "$GLANCE_DB_PASS"
	db_create placement placement "$PLACEMENT_DB_PASS"
	db_create nova_api nova "$NOVA_DB_PASS"
	db_create nova nova "$NOVA_DB_PASS"
	db_create nova_cell0 nova "$NOVA_DB_PASS"
	db_create neutron neutron "$NEUTRON_DB_PASS"
	nsx glance-manage --config-file $ETC/glance/glance-api.conf db_sync
	nsx placement-manage --config-file $ETC/placement/placement.conf db sync
	nsx nova-manage --config-file $ETC/nova/nova.conf api_db sync
	nsx nova-manage --config-file $ETC/nova/nova.conf cell_v2 map_cell0
	nsx nova-manage --config-file $ETC/nova/nova.conf cell_v2 list_cells | grep -q ' cell1 ' ||
		nsx nova-manage --config-file $ETC/nova/nova.conf cell_v2 create_cell --name cell1
	nsx nova-manage --config-file $ETC/nova/nova.conf db sync
	nsx neutron-db-manage --config-file $ETC/neutron/neutron.conf \
		--config-file $ETC/neutron/ml2_conf.ini upgrade head
}

newer() { # STAMP FILES...: is a FILE newer than STAMP (or STAMP missing)?
	local stamp=$STATE/stamps/$1 f
	shift
	mkdir -p $STATE/stamps
	[ -e "$stamp" ] || return 0
	for f in "$@"; do [ "$f" -nt "$stamp" ] && return 0; done
	return 1
}

ever() { # STAMP COMMAND...: run COMMAND once for the life of the state (never again)
	local stamp=$STATE/stamps/$1
	shift
	[ -e "$stamp" ] && return 0
	"$@"
	mkdir -p $STATE/stamps
	: >"$stamp"
}

quiet() { # COMMAND...: its output to the setup log, shown only if it fails
	local log=$LOGDIR/setup.log
	echo "+ $*" >>$log
	"$@" >>$log 2>&1 || { tail -20 $log >&2; die "failed: $* (log: $log)"; }
}

compute_registered() {
	[ "$(sql "SELECT COUNT(*) FROM nova.compute_nodes WHERE host='$HOSTNAME_AIO' AND deleted=0" -N)" -gt 0 ]
}

discover_compute() { # map the compute host into cell1 once it has registered
	wait_for nova-compute 180 compute_registered
	nsx nova-manage --config-file $ETC/nova/nova.conf cell_v2 discover_hosts
}

# --- commands -----------------------------------------------------------------------

cmd_up() {
	[ "$(id -u)" = 0 ] || die "run as root"
	mkdir -p $LOGDIR $STATE $RUN $ETC
	phase install
	install_packages
	phase configure
	choices
	secrets
	write_configs
	phase namespace
	ns_up
	phase base
	mysql_init
	start_base
	rabbit_user
	phase keystone
	once keystone-db quiet sync_keystone
	start_keystone
	once keystone-bootstrap quiet bootstrap_keystone
	write_clouds_yaml
	# again only when bootstrap.py, the secrets or the choices changed
	local choice=${NBCOS_HEAT:-1}${NBCOS_CINDER:-1}${NBCOS_DESIGNATE:-0}
	if newer identity-$choice "$HERE/bootstrap.py" $STATE/secrets.env; then
		quiet nsx env NBCOS_HEAT="${NBCOS_HEAT:-1}" NBCOS_CINDER="${NBCOS_CINDER:-1}" \
			NBCOS_DESIGNATE="${NBCOS_DESIGNATE:-0}" /usr/bin/python3 "$HERE/bootstrap.py" identity
		touch $STATE/stamps/identity-$choice
	fi
	phase db-sync
	once services-db quiet sync_services
	phase control
	start_control
	wait_apis
	phase compute
	start_compute
	once compute-discovered quiet discover_compute
	phase storage
	storage_up
	phase heat
	heat_up
	phase dns
	designate_up
	phase resources
	quiet nsx /usr/bin/python3 "$HERE/bootstrap.py" resources
	phase end
	say "up in $(printf '%.1f' "$(echo "$(date +%s.%N) - $T0" | bc)") s"
	say "clouds.yaml: $CLOUDS_YAML (clouds nbcloud-aio, nbcloud-aio-admin)"
	say "  export OS_CLIENT_CONFIG_FILE=$CLOUDS_YAML"
	say "  $0 exec openstack --os-cloud nbcloud-aio server list"
	say "APIs listen on 127.0.0.1 inside netns $NS: run clients with '$0 exec' or 'ip netns exec $NS'"
}

stop_pids() { # PIDS...: SIGTERM, up to 15 s, then SIGKILL
	local pids="$*" pid i
	[ -n "${pids// /}" ] || return 0
	kill $pids 2>/dev/null || true
	for i in $(seq 1 75); do
		pids=$(for pid in $pids; do ! kill -0 "$pid" 2>/dev/null || echo "$pid"; done | tr '\n' ' ')
		[ -n "${pids// /}" ] || return 0
		sleep 0.2
	done
	say "killing what ignored SIGTERM for 15 s: $(ps -o pid=,comm= -p "$(echo $pids | tr " " ,)" | tr -s " \n" " ")"
	kill -9 $pids 2>/dev/null || true
	sleep 0.5
}

cmd_down() {
	local all pid services=
	all=$(ns_pids | tr '\n' ' ')
	[ -z "${all// /}" ] || say "stopping $(echo $all | wc -w) processes"
	# the services first, while the database, the broker and Ceph still answer their
	# goodbyes (nova-conductor and cinder-volume hang on a dead broker)
	for pid in $all; do
		case "$(cat /proc/$pid/comm 2>/dev/null)" in
		mysqld | beam.smp | epmd | erl_child_setup | inet_gethost | rabbitmq-serve* | memcached | ceph-*) ;;
		*) services+=" $pid" ;;
		esac
	done
	stop_pids $services
	stop_pids $(ns_pids)
	rm -rf $RUN/pids
	if findmnt -rn "$MNT" >/dev/null 2>&1; then umount "$MNT"; fi
	if findmnt -rn $RUN/ns >/dev/null 2>&1; then umount $RUN/ns; fi
	# the private /run/netns entries die with the mount namespace; the folder is ours
	rm -rf $RUN/netns $RUN/libvirt
	[ ! -e /run/netns/$NS ] || ip netns del $NS
	say "down"
}

cmd_status() {
	local name pid state rc=0
	if ! ns_ready; then
		say "not up (no namespace $NS)"
		return 3
	fi
	for name in "${DAEMONS[@]}"; do
		if running "$name"; then
			read -r pid <"$RUN/pids/$name.pid"
			state="running  pid $pid"
		elif [ -e "$RUN/pids/$name.pid" ]; then
			state="DEAD     (log: $LOGDIR/$name.log)"
			rc=1
		else
			state="-"
		fi
		printf '  %-27s %s\n' "$name" "$state"
	done
	printf '  %-27s %s\n' "all processes" "$(ns_pids | wc -l)"
	return $rc
}

cmd_usage() { # [SECONDS]: the cloud's memory (PSS, RSS) and CPU over SECONDS, biggest first
	local secs=${1:-30} pids
	ns_ready || die "the cloud is not up"
	pids=$(ns_pids | tr '\n' ' ')
	/usr/bin/python3 - "$secs" $pids <<'EOF'
import os, sys, time
secs, pids = float(sys.argv[1]), sys.argv[2:]
hz = os.sysconf("SC_CLK_TCK")
def ticks(p):
    try:
        with open(f"/proc/{p}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])
    except OSError:
        return None
def mem(p):
    out = {}
    try:
        with open(f"/proc/{p}/smaps_rollup") as f:
            for line in f:
                k, _, v = line.partition(":")
                if k in ("Rss", "Pss"):
                    out[k] = int(v.split()[0])
    except OSError:
        pass
    return out
def name(p):
    try:
        with open(f"/proc/{p}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        return "?"
    if len(argv) == 1 and " " in argv[0]:  # a title set by the process (neutron-server: ...)
        return argv[0].split(" (")[0][:28]
    words = [os.path.basename(a) for a in argv[:3] if not a.startswith("-")]
    for w in words:
        if w not in ("python3", "python3.11", "env", "setsid", "sudo", "uwsgi"):
            return w[:28]
    return (words or ["?"])[0]
t0 = {p: ticks(p) for p in pids}
time.sleep(secs)
rows = {}
for p in pids:
    t1, m = ticks(p), mem(p)
    if t1 is None or t0[p] is None:
        continue
    r = rows.setdefault(name(p), [0, 0, 0.0, 0])
    r[0] += m.get("Pss", 0); r[1] += m.get("Rss", 0); r[2] += (t1 - t0[p]) / hz / secs * 100; r[3] += 1
print(f"  {'process':28} {'n':>3} {'PSS MiB':>8} {'RSS MiB':>8} {'CPU %':>6}")
tot = [0, 0, 0.0, 0]
for k, (pss, rss, cpu, n) in sorted(rows.items(), key=lambda kv: -kv[1][0]):
    print(f"  {k:28} {n:3} {pss/1024:8.0f} {rss/1024:8.0f} {cpu:6.1f}")
    tot = [tot[0] + pss, tot[1] + rss, tot[2] + cpu, tot[3] + n]
print(f"  {'total':28} {tot[3]:3} {tot[0]/1024:8.0f} {tot[1]/1024:8.0f} {tot[2]:6.1f}"
      f"   (CPU % of one core over {secs:.0f} s; the machine has {os.cpu_count()})")
EOF
}

cmd_exec() { # run a command inside the namespaces, with the cloud's clouds.yaml
	ns_ready || die "the cloud is not up: run '$0 up'"
	export OS_CLIENT_CONFIG_FILE=$CLOUDS_YAML
	# in the caller's folder: entering a mount namespace would start it at /
	nsenter --net=/run/netns/$NS --mount=$MNT --wd="$PWD" -- "$@"
}

cmd_smoke() { # [--debian] ...: the image of this checkout's code (built once per digest)
	local repo=$HERE/../.. kind=tiny arg args=()
	for arg in "$@"; do
		if [ "$arg" = --debian ]; then kind=debian; else args+=("$arg"); fi
	done
	[ -x "$repo/.venv/bin/python" ] || die "no .venv in $repo: run scripts/setup.sh first"
	dir=$(cd "$repo" && .venv/bin/python -c "from nbcloud import config
from nbcloud.images.$kind import build_$kind
print(build_$kind(config.cache_dir()).initrd.parent)")
	cmd_exec /usr/bin/python3 "$HERE/smoke.py" --$kind "$dir" "${args[@]}"
}

cmd_purge() {
	cmd_down
	rm -rf $STATE $ETC $RUN
	say "purged $STATE $ETC (logs kept in $LOGDIR)"
}

case "${1:-}" in
up) cmd_up ;;
down) cmd_down ;;
status) cmd_status ;;
usage) shift; cmd_usage "$@" ;;
exec) shift; cmd_exec "$@" ;;
smoke) shift; cmd_smoke "$@" ;;
purge) cmd_purge ;;
*) sed -n '2,14p' "$0" >&2; exit 2 ;;
esac
