#!/bin/sh
# nbcloud tiny image: PID 1 (busybox ash).  A NoCloud reader for the subset of
# cloud-init that nbcloud's own seeds use, then dropbear, then user-data.
#
# Honoured:
#   meta-data       instance-id, local-hostname
#   network-config  netplan v2 "ethernets": match.macaddress (or match.name / the id
#                   as an exact interface name), set-name, dhcp4, addresses,
#                   gateway4, routes (to: default|0.0.0.0/0, via), nameservers.addresses
#   user-data       "#cloud-config", a "#!" script (run with sh), or MIME multipart of
#                   text/cloud-config and text/x-shellscript parts (7bit/8bit/base64)
#   config drive    (OpenStack, when the SMBIOS product names OpenStack: an ISO9660
#                   volume config-2 on a CD-ROM or virtio disk) openstack/latest/
#                   meta_data.json uuid, hostname, public_keys; user_data as below;
#                   network_data.json: every network on the NIC of its link's MAC,
#                   ipv4_dhcp by DHCP, ipv4 static (default route, DNS services); the
#                   first NIC alone takes the default route and the name servers
#   cloud-config    hostname, ssh_authorized_keys, ssh_keys.ed25519_private/_public,
#                   runcmd (strings, or lists of args).  Several cloud-config parts are
#                   merged like cloud-init's list(append)+str(): lists add up, the
#                   last hostname wins.
# The seed's OpenSSH ed25519 host key is converted with dropbearconvert (about 50 ms,
# overlapped with the network setup), so the seed stays plain NoCloud; without one a
# key is generated with dropbearkey before dropbear starts (not -R: the fingerprint
# is printed, and it is the same for every connection).
# Not honoured: users/groups/passwords (root only, key login only), write_files,
#   packages, bootcmd, disable_root, gzip'd or #include user-data, nested multiparts,
#   jinja, boothooks, network-config v1/ENI, IPv6, bonds/bridges/vlans, YAML anchors,
#   flow mappings and quoted scalars spanning lines.  Scripts with another interpreter
#   (python ...) run with sh, since sh is all there is.
#
# Console protocol (read by the host):
#   nbcloud-ready ip=<addr> hostname=<name> sshd=up|down
#                                              once dropbear listens (down: not in 2 s)
#   -----BEGIN SSH HOST KEY FINGERPRINTS----- ... (as cloud-init prints them)
#   nbcloud-userdata-done rc=<n>               after scripts and runcmd
# After ready a root shell runs on ttyS0 (the serial console), respawned when it exits.
# The tiny image keeps no state: every boot is a first boot (runcmd runs again).
#
# Warm clones (kernel command line nbwarm=1: the base of warm clones).  The init stops
# before anything that makes an instance itself: no seed is looked for, no address,
# host key, authorized key, hostname or user-data, every NIC stays down (its IPv6
# link-local address comes from the clone's MAC), nothing reads
# /proc/sys/kernel/random/boot_id or uses the network (the kernel makes the boot id and
# its network secrets lazily: after the restore, from the reseeded CRNG, so per clone).
# It prints "nbcloud-warm-waiting" on the console, and the host saves the guest there.
# Each restored clone goes on reading its identity from the virtio console hvc0
# (raw mode), protocol NBCLONE1:
#   host -> guest  "NBCLONE1 <len> <seed> <epoch>\n", then <len> bytes of a cpio
#                  archive (newc; cpio stops at its trailer, the tty gives no EOF),
#                  unpacked at /.  What read_seed would make of the instance's seed,
#                  made by the host (every fork costs under TCG, and a clone's first
#                  forks most):
#                    run/nbcloud/clone.env   MD_ID MD_HOST CC_HOST NICS (the NICS lines
#                                            of configure_network) and MACS ("<base mac>
#                                            <clone mac>" pairs: a restored virtio-net
#                                            keeps the base's MAC), shell assignments
#                    run/nbcloud/authorized_keys, run/nbcloud/host_ed25519.pub
#                    etc/dropbear/dropbear_ed25519_host_key  the pinned key, in
#                                            dropbear's format (no dropbearconvert)
#                    run/nbcloud/user-data   the user's own user-data, if any: read here
#                                            as from a seed (scripts, cloud-config, MIME)
#                    run/cidata/{meta-data,user-data,network-config}  the seed's files,
#                                            for the record (the cold path mounts them)
#   guest -> host  "nbcloud-ready ip=<addr> hostname=<name> sshd=up", as on the console
# <seed>, hex from the host's CSPRNG, is written into /dev/urandom and the CRNG reseeded
# at once, before anything forks (a fork already draws a stack canary): nbreseed is
# ioctl(RNDRESEEDCRNG), since this kernel has no vmgenid driver and would otherwise go
# on with the base's CRNG key until its next scheduled reseed.  <epoch>, the host's UTC
# seconds, sets the clock, which stood still while the image was saved.  A reboot of a
# clone is a cold boot from its seed (the host gives it the stock command line).
# Boot with nbdebug=1 on the kernel command line for stage timestamps.
# Every fork+exec costs milliseconds under TCG, so builtins are preferred throughout.
# Sourced with NBCLOUD_INIT_LIB=1 it only defines its functions (for the unit tests).

export PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root TERM=linux
NB=/run/nbcloud   # what the seed said, split into files
SEED=/run/cidata  # the seed, mounted
HOSTKEY=/etc/dropbear/dropbear_ed25519_host_key
DEFAULT_IFS=$IFS

t() { [ -z "$nbdebug" ] || { read -r up _ </proc/uptime; echo "nbcloud-t $up $*"; }; }
say() { echo "nbcloud: $*"; }

stop_all() { # busybox poweroff/reboot/halt signal PID 1, and so does the power button
	say "$1"
	kill $(cat /run/*.pid 2>/dev/null) 2>/dev/null
	sync
	umount -r $SEED 2>/dev/null
	"$1" -f
}

watch_power_button() { # ACPI power button (libvirt's shutdown): any event powers off
	local mods e name
	read -r mods </lib/modules/power.list
	modprobe -a $mods
	for e in /sys/class/input/event*; do
		read -r name <"$e/device/name" && [ "$name" = "Power Button" ] || continue
		(dd if="/dev/input/${e##*/}" of=/dev/null bs=24 count=1 2>/dev/null && kill -USR2 1) &
	done
}

# --- a YAML subset reader: flattens to paths (a.b.0.c), then picks what we honour ---
yaml() { # yaml KIND FILE: meta|net -> shell assignments on stdout; cc -> files in $NB
	awk -v kind="$1" -v out="$NB" '
function shq(s,  n, p, i, r) { n = split(s, p, "\047"); r = p[1]
	for (i = 2; i <= n; i++) r = r "\047\\\047\047" p[i]; return "\047" r "\047" }
function trim(s) { sub(/^[ \t]+/, "", s); sub(/[ \t]+$/, "", s); return s }
function unq(s,  c, r, i, ch) { s = trim(s); c = substr(s, 1, 1)
	if (c != "\047" && c != "\"") { sub(/[ \t]+#.*$/, "", s); return s }
	r = ""
	for (i = 2; i <= length(s); i++) { ch = substr(s, i, 1)
		if (c == "\047" && ch == "\047") { if (substr(s, i + 1, 1) != "\047") break; i++ }
		else if (c == "\"" && ch == "\"") break
		else if (c == "\"" && ch == "\\") { i++; ch = substr(s, i, 1)
			if (ch == "n") ch = "\n"; else if (ch == "t") ch = "\t" }
		r = r ch }
	return r }
function put(p, v) { if (!(p in V)) order[++no] = p; V[p] = v }
function flow(p, s,  n, i, ch, q, item) { s = substr(trim(s), 2); n = 0; q = ""; item = ""
	for (i = 1; i <= length(s); i++) { ch = substr(s, i, 1)
		if (q != "") { if (q == "\"" && ch == "\\") { item = item ch substr(s, ++i, 1); continue }
			if (ch == q) q = ""; item = item ch; continue }
		if (ch == "\047" || ch == "\"") { q = ch; item = item ch; continue }
		if (ch == "," || ch == "]") { if (trim(item) != "") put(p "." n++, unq(item)); item = ""
			if (ch == "]") return; continue }
		item = item ch } }
function push(li, p, ty) { sp++; ind[sp] = li; pre[sp] = p; typ[sp] = ty; cnt[sp] = 0 }
function path(a, b) { return a == "" ? b : a "." b }
function iskey(s) { return s ~ /^[^ #\047"\[{-][^:]*:([ \t]|$)/ }
function value(p, v, li) {
	if (v ~ /^[|>]/) { blk = 1; bp = p; bpar = li; bind = -1; bval = ""; bnl = 0
		bfold = v ~ /^>/; bchomp = v ~ /^.[0-9]?-/ ? "-" : (v ~ /^.[0-9]?\+/ ? "+" : ""); return }
	if (v ~ /^\[/) { flow(p, v); return }
	if (v ~ /^\{/) return
	put(p, unq(v)) }
function endblock() { blk = 0
	if (bchomp == "+") { while (bnl-- > 0) bval = bval "\n" }
	if (bchomp == "" && bval != "") bval = bval "\n"
	put(bp, bval) }
function handle(li, s,  rest, j, p, k) {
	if (s ~ /^-([ \t]|$)/) {
		if (pend && li >= pind) push(li, pkey, "seq")
		else { while (sp > 0 && ind[sp] > li) sp--; if (typ[sp] != "seq" || ind[sp] != li) return }
		pend = 0; p = path(pre[sp], cnt[sp]++)
		rest = substr(s, 2); match(rest, /^[ \t]*/); j = RLENGTH; rest = substr(rest, j + 1)
		if (rest == "" || rest ~ /^#/) { pend = 1; pind = li; pkey = p; return }
		if (rest ~ /^-([ \t]|$)/ || iskey(rest)) { pend = 1; pind = li; pkey = p; handle(li + 1 + j, rest); return }
		value(p, rest, li); return }
	if (!iskey(s)) return
	if (pend && li > pind) push(li, pkey, "map")
	else while (sp > 0 && (ind[sp] > li || (ind[sp] == li && typ[sp] == "seq"))) sp--
	pend = 0; k = index(s, ":"); p = path(pre[sp], trim(substr(s, 1, k - 1)))
	rest = trim(substr(s, k + 1))
	if (rest == "" || rest ~ /^#/) { pend = 1; pind = li; pkey = p; return }
	value(p, rest, li) }
BEGIN { sp = 0; ind[0] = -1; pre[0] = ""; typ[0] = "map" }
{ sub(/\r$/, "") }
blk { if ($0 ~ /^[ \t]*$/) { bnl++; next }
	match($0, /^ */)
	if (RLENGTH > bpar) { if (bind < 0) bind = RLENGTH
		if (bval != "") { while (bnl-- > 0) bval = bval "\n"; bval = bval (bfold ? " " : "\n") }
		bnl = 0; bval = bval substr($0, bind + 1); next }
	endblock() }
/^[ \t]*(#|$)/ || /^(---|\.\.\.)/ { next }
{ match($0, /^ */); handle(RLENGTH, substr($0, RLENGTH + 1)) }
function list(p,  i, r) { r = ""; for (i = 0; (p "." i) in V; i++) r = r (i ? "," : "") V[p "." i]
	return r == "" ? "-" : r }
END { if (blk) endblock()
	if (kind == "meta") { print "MD_ID=" shq(V["instance-id"]); print "MD_HOST=" shq(V["local-hostname"]) }
	if (kind == "cc") {
		if ("hostname" in V) print "CC_HOST=" shq(V["hostname"])
		for (i = 0; ("ssh_authorized_keys." i) in V; i++) print V["ssh_authorized_keys." i] >> (out "/authorized_keys")
		if ("ssh_keys.ed25519_private" in V) printf "%s", V["ssh_keys.ed25519_private"] > (out "/host_ed25519.pem")
		if ("ssh_keys.ed25519_public" in V) print V["ssh_keys.ed25519_public"] > (out "/host_ed25519.pub")
		for (i = 0; ; i++) { p = "runcmd." i
			if (p in V) line = V[p]
			else if ((p ".0") in V) { line = ""; for (j = 0; (p "." j) in V; j++) line = line (j ? " " : "") shq(V[p "." j]) }
			else break
			print line >> (out "/runcmd") } }
	if (kind == "net") { b = ("network.version" in V) ? "network." : ""
		if (V[b "version"] != "2") { print "say " shq("network-config is not netplan v2: ignored"); exit }
		for (o = 1; o <= no; o++) { if (substr(order[o], 1, length(b) + 10) != b "ethernets.") continue
			split(substr(order[o], length(b) + 11), parts, "."); id = parts[1]
			if (id in seen) continue; seen[id] = 1; e = b "ethernets." id
			gw = V[e ".gateway4"]
			for (i = 0; (e ".routes." i ".to") in V; i++)
				if (V[e ".routes." i ".to"] ~ /^(default|0\.0\.0\.0\/0)$/) gw = V[e ".routes." i ".via"]
			d = V[e ".dhcp4"] ~ /^([Tt]rue|[Yy]es|[Oo]n)$/ ? "dhcp" : "static"
			m = tolower(V[e ".match.macaddress"])
			printf "NICS=\"$NICS\"%s\n", shq(sprintf("%s %s %s %s %s %s %s %s\n", id, m == "" ? "-" : m,
				V[e ".set-name"] == "" ? "-" : V[e ".set-name"], V[e ".match.name"] == "" ? "-" : V[e ".match.name"],
				d, list(e ".addresses"), gw == "" ? "-" : gw, list(e ".nameservers.addresses"))) } }
}' "$2"
}

mime_split() { # MIME multipart -> $NB/part.N bodies and "N type encoding" lines in $NB/parts
	awk -v out="$NB" '
function hval(h, name,  n, l, i, v) { n = split(h, l, "\n")
	for (i = 1; i <= n; i++) if (tolower(l[i]) ~ "^" name ":") { v = substr(l[i], length(name) + 2)
		sub(/;.*/, "", v); gsub(/[ \t]/, "", v); return tolower(v) }
	return "" }
{ sub(/\r$/, "") }
st == "" { if ($0 != "") { h = h " " $0; next }
	b = h; sub(/.*[bB][oO][uU][nN][dD][aA][rR][yY]=/, "", b)
	if (b ~ /^"/) { b = substr(b, 2); sub(/".*/, "", b) } else sub(/[; \t].*/, "", b)
	st = "pre"; next }
$0 == "--" b "--" { st = "end"; next }
$0 == "--" b { n++; f = out "/part." n; st = "phdr"; ph = ""; next }
st == "phdr" { if ($0 != "") { ph = ph "\n" $0; next }
	print n, hval(ph, "content-type"), hval(ph, "content-transfer-encoding") > (out "/parts")
	printf "" > f; st = "body"; next }
st == "body" { print > f }' "$1"
}

read_user_data() { # FILE [MIME-TYPE]: classify user-data (or one part of it)
	local f=$1 type=$2 first n ptype enc
	read -r first <"$f"
	case "$type" in
	text/cloud-config) first='#cloud-config' ;;
	text/x-shellscript) first='#!' ;;
	esac
	case "$first" in
	'#cloud-config'*) eval "$(yaml cc "$f")" ;;
	'#!'*) NSCRIPT=$((NSCRIPT + 1)); cp "$f" "$NB/script.$NSCRIPT" ;;
	[Cc]ontent-[Tt]ype:*multipart* | [Mm][Ii][Mm][Ee]-[Vv]ersion:*)
		mime_split "$f"
		[ -e $NB/parts ] || return
		while read -r n ptype enc; do
			[ "$enc" = base64 ] && base64 -d <"$NB/part.$n" >"$NB/part.$n.d" && mv "$NB/part.$n.d" "$NB/part.$n"
			read_user_data "$NB/part.$n" "$ptype"
		done <$NB/parts ;;
	'') ;;
	*) say "user-data of an unsupported kind ignored (${first%%[^a-zA-Z#!]*})" ;;
	esac
}

read_seed() { # the mounted seed -> MD_ID MD_HOST CC_HOST NICS, and files in $NB
	NICS= NSCRIPT=100 MD_ID= MD_HOST= CC_HOST=  # scripts 101.. sort before "runcmd"
	[ -f $SEED/meta-data ] && eval "$(yaml meta $SEED/meta-data)"
	[ -f $SEED/network-config ] && eval "$(yaml net $SEED/network-config)"
	[ -f $SEED/user-data ] && read_user_data $SEED/user-data
	[ -s $NB/runcmd ] && { echo '#!/bin/sh'; cat $NB/runcmd; } >"$NB/script.runcmd"
}

json_read() { # meta|net FILE: meta_data.json -> MD_ID MD_HOST assignments and public_keys
	# to $NB/authorized_keys; network_data.json -> NICS lines (one per network, its link's
	# MAC; ipv4_dhcp as dhcp, ipv4 as static with its routes' default and the DNS services)
	awk -v out="$NB" -v what="$1" '
function shq(s,  n, p, i, r) { n = split(s, p, "\047"); r = p[1]
	for (i = 2; i <= n; i++) r = r "\047\\\047\047" p[i]; return "\047" r "\047" }
function ws() { while (i <= n && index(" \t\r\n", substr(s, i, 1))) i++ }
function str(  r, c) { i++; r = ""
	while (i <= n) { c = substr(s, i++, 1)
		if (c == "\"") return r
		if (c == "\\") { c = substr(s, i++, 1)
			if (c == "n") c = "\n"; else if (c == "t") c = "\t"; else if (c == "r" || c == "b" || c == "f") c = ""
			else if (c == "u") { c = "?"; i += 4 } }
		r = r c }
	return r }
function val(p,  k, c, m) { ws(); c = substr(s, i, 1)
	if (c == "{") { i++; ws(); if (substr(s, i, 1) == "}") { i++; return }
		while (i <= n) { ws(); k = str(); ws(); i++; val(p == "" ? k : p "." k); ws()
			c = substr(s, i++, 1); if (c != ",") return } }
	if (c == "[") { i++; ws(); m = 0; if (substr(s, i, 1) == "]") { i++; return }
		while (i <= n) { val(p "." m++); ws(); c = substr(s, i++, 1); if (c != ",") return } }
	if (c == "\"") { K[++nk] = p; V[p] = str(); return }
	match(substr(s, i), /^[^],} \t\r\n]+/); K[++nk] = p; V[p] = substr(s, i, RLENGTH); i += RLENGTH }
{ s = s $0 "\n" }
function prefix(m,  p, q, b) { if (m !~ /\./) return m; split(m, q, "."); b = 0
	for (p = 1; p <= 4; p++) for (; q[p] > 0; q[p] = (q[p] * 2) % 256) b++; return b }
END { n = length(s); i = 1; val("")
	if (what == "net") {
		dns = ""; for (j = 0; ("services." j ".type") in V; j++)
			if (V["services." j ".type"] == "dns") dns = dns (dns == "" ? "" : ",") V["services." j ".address"]
		for (j = 0; ("networks." j ".link") in V; j++) { e = "networks." j; mac = "-"
			for (l = 0; ("links." l ".id") in V; l++)
				if (V["links." l ".id"] == V[e ".link"]) mac = tolower(V["links." l ".ethernet_mac_address"])
			if (V[e ".type"] == "ipv4_dhcp") { mode = "dhcp"; addrs = "-"; gw = "-" }
			else if (V[e ".type"] == "ipv4") { mode = "static"; gw = "-"
				addrs = V[e ".ip_address"] "/" prefix(V[e ".netmask"])
				for (r = 0; (e ".routes." r ".network") in V; r++)
					if (V[e ".routes." r ".network"] == "0.0.0.0") gw = V[e ".routes." r ".gateway"] }
			else continue
			printf "NICS=\"$NICS\"%s\n", shq(sprintf("net%d %s - - %s %s %s %s\n", j, mac, mode, addrs, gw,
				mode == "static" && dns != "" ? dns : "-")) }
		exit }
	print "MD_ID=" shq(V["uuid"]); print "MD_HOST=" shq(V["hostname"])
	for (j = 1; j <= nk; j++) if (K[j] ~ /^public_keys\./) { k = V[K[j]]; sub(/[ \t\n]+$/, "", k)
		print k >> (out "/authorized_keys") } }' "$2"
}

read_config_drive() { # the mounted OpenStack config drive -> MD_ID MD_HOST CC_HOST, files in $NB
	local d=$SEED/openstack/latest
	NICS= NSCRIPT=100 MD_ID= MD_HOST= CC_HOST=
	[ -f $d/meta_data.json ] && eval "$(json_read meta $d/meta_data.json)"
	[ -f $d/network_data.json ] && eval "$(json_read net $d/network_data.json)"
	[ -f $d/user_data ] && read_user_data $d/user_data
	[ -s $NB/runcmd ] && { echo '#!/bin/sh'; cat $NB/runcmd; } >"$NB/script.runcmd"
}

volume_id() { # DEV: the first word of its ISO9660 volume id (offset 32808), if any
	VOLID=$(dd if="$1" bs=8 skip=4101 count=4 2>/dev/null)
	VOLID=${VOLID%% *}
}

find_seed() { # -> SEEDDEV, a virtio disk whose ISO9660 volume id is cidata
	local i=0 d
	# virtio_blk has probed the disks when modprobe returns: 1 s is a wide margin.
	while [ $i -lt 40 ]; do
		for d in /dev/vd?; do
			[ -b "$d" ] || continue
			volume_id "$d"
			case "$VOLID" in cidata | CIDATA) SEEDDEV=$d; return 0 ;; esac
		done
		usleep 25000
		i=$((i + 1))
	done
	return 1
}

on_openstack() { # Nova names itself in the SMBIOS system product
	local product
	read -r product </sys/class/dmi/id/product_name 2>/dev/null || return 1
	case "$product" in *OpenStack*) return 0 ;; esac
	return 1
}

find_config_drive() { # -> SEEDDEV, a CD-ROM or virtio disk labelled config-2
	local i=0 d mods
	read -r mods </lib/modules/cdrom.list
	modprobe -a $mods || say "modprobe $mods failed"
	while [ $i -lt 120 ]; do # the ATA probe is slower than virtio's under TCG
		for d in /dev/sr? /dev/vd?; do
			[ -b "$d" ] || continue
			volume_id "$d"
			case "$VOLID" in config-2 | CONFIG-2) SEEDDEV=$d; return 0 ;; esac
		done
		usleep 25000
		i=$((i + 1))
	done
	return 1
}

nic_by() { # MAC NAME ID -> DEV, the interface name (the probe may trail a little)
	local i=0 n a
	while [ $i -lt 100 ]; do
		for n in /sys/class/net/*; do
			[ "$1" != - ] && read -r a <"$n/address" && [ "$a" = "$1" ] && { DEV=${n##*/}; return; }
		done
		[ "$2" != - ] && [ -e "/sys/class/net/$2" ] && { DEV=$2; return; }
		[ -e "/sys/class/net/$3" ] && { DEV=$3; return; }
		usleep 20000
		i=$((i + 1))
	done
	DEV=
}

dhcp() { # IFACE [ADDR]: with ADDR (already set statically) only to record the lease
	local opts="-i $1 -s /usr/share/udhcpc/default.script -x hostname:$HOST -p /run/udhcpc.$1.pid"
	if [ -n "$2" ] && [ -n "$WARM" ]; then # a clone: after ready (the vCPU is busiest now)
		DHCP_LATER="$DHCP_LATER $1=$2"
	elif [ -n "$2" ]; then
		echo "$2" >"$NB/static-$1"
		udhcpc $opts -f -r "$2" -t 3 -T 2 -A 10 -S >/dev/null 2>&1 &
	else
		udhcpc $opts -b -t 20 -T 1 -A 1 -S >/dev/null 2>&1
	fi
}

configure_network() { # $NICS lines: id mac set-name match-name dhcp|static addrs gw dns -> IP
	# Every NIC is configured; the first with a gateway gets the default route, and
	# /etc/resolv.conf lists the name servers of all of them, the first NIC's first.
	local id mac setname mname mode addrs gw dns dev a ns= routed=
	IP=
	is_up lo || ip link set lo up
	echo "${NICS:-eth0 - - - dhcp - - -}" >$NB/nics
	while read -r id mac setname mname mode addrs gw dns; do
		[ -n "$id" ] || continue
		nic_by "$mac" "$mname" "$id"
		dev=$DEV
		[ -n "$dev" ] || { say "no interface for $id ($mac)"; continue; }
		if [ "$setname" != - ] && [ "$setname" != "$dev" ] && ip link set "$dev" name "$setname"; then
			dev=$setname
		fi
		is_up "$dev" || ip link set "$dev" up
		if [ "$addrs" != - ]; then # static: at once, so that SSH is reachable at once
			IFS=,
			for a in $addrs; do ip addr add "$a" dev "$dev"; done
			[ "$dns" != - ] && for a in $dns; do
				case " $ns " in *" $a "*) continue ;; esac
				[ -n "$ns" ] || : >/etc/resolv.conf
				ns="$ns $a"
				echo "nameserver $a" >>/etc/resolv.conf
			done
			IFS=$DEFAULT_IFS
			[ "$gw" != - ] && [ -z "$routed" ] && ip route add default via "$gw" dev "$dev" &&
				routed=$dev
			a=${addrs%%,*}
			IP=${IP:-${a%/*}}
			# Announce the address (gratuitous ARP): a host that already tried to reach it,
			# or knew it under an earlier instance's MAC, learns it now, not at its next
			# ARP retry a second later.
			arping -U -c 2 -I "$dev" "${a%/*}" >/dev/null 2>&1 &
			[ "$mode" = dhcp ] || dhcp "$dev" "${a%/*}"
		elif [ "$mode" = dhcp ]; then
			# the default route and name servers come from the first NIC's lease only
			[ -n "$routed" ] || { echo "$dev" >$NB/route-dev; routed=$dev; }
			dhcp "$dev"
		fi
		[ -z "$IP" ] && [ -s "$NB/ip-$dev" ] && read -r IP <"$NB/ip-$dev"
	done <$NB/nics
}

listening() { # is anything listening on TCP port 22?
	local l st
	while read -r _ l _ st _; do [ "$st" = 0A ] && [ "${l#*:}" = 0016 ] && return 0; done </proc/net/tcp
	return 1
}

print_fingerprints() { # as cloud-init prints them on the console
	local pub h fp l
	if [ -s $NB/fingerprints ]; then # a clone's, made by the host: no program runs
		while IFS= read -r l; do echo "$l"; done <$NB/fingerprints
		return
	fi
	if [ -s $NB/host_ed25519.pub ]; then
		read -r pub <$NB/host_ed25519.pub
	else
		pub=$(dropbearkey -y -f $HOSTKEY 2>/dev/null | grep '^ssh-')
	fi
	set -- $pub
	h=$(echo "$2" | base64 -d | sha256sum)
	fp=$(echo "${h%% *}" | xxd -r -p | base64)
	echo "-----BEGIN SSH HOST KEY FINGERPRINTS-----"
	echo "256 SHA256:${fp%%=*} root@$HOST (ED25519)"
	echo "-----END SSH HOST KEY FINGERPRINTS-----"
	echo "-----BEGIN SSH HOST KEY KEYS-----"
	echo "$1 $2 root@$HOST"
	echo "-----END SSH HOST KEY KEYS-----"
}

serial_shell() { # a root shell on the serial console, for whoever may open it (libvirt's
	# console stream: `%cloud instance terminal NAME --serial`, `virsh console`); a new
	# one after each exit. setsid -c makes ttyS0 its controlling terminal; login -f
	# (no password: reaching the console takes the host's libvirt already) sets SIGINT
	# back to default, which a background job of this script ignores: Ctrl-C works.
	while :; do
		setsid -c login -f root </dev/ttyS0 >/dev/ttyS0 2>&1
		usleep 200000
	done
}

run_user_data() { # user-data scripts, then runcmd, as cloud-init's final stage does
	local rc=0 s
	set -o pipefail
	cd /root
	for s in $NB/script.*; do
		[ -f "$s" ] || continue
		sh "$s" 2>&1 | tee -a /var/log/cloud-init-output.log || rc=$?
	done
	echo "nbcloud-userdata-done rc=$rc"
	t userdata
}

is_up() { # IFACE: is its IFF_UP flag set?
	local f
	read -r f <"/sys/class/net/$1/flags" && [ $((f & 1)) = 1 ]
}

# --- warm clones (see the top) --------------------------------------------------------
WARMDEV=/dev/hvc0
warm_wait() { # -> the clone's identity unpacked (see the top); 1 if there is no channel
	local magic len seed epoch i=0
	modprobe virtio_console || return 1
	while [ ! -c $WARMDEV ] && [ $i -lt 100 ]; do usleep 10000; i=$((i + 1)); done
	[ -c $WARMDEV ] || { say "no $WARMDEV: not a warm base"; return 1; }
	exec 3<>$WARMDEV
	stty raw -echo <&3 # on the descriptor kept open: hvc resets termios on the last close
	ip link set lo up  # the same in every clone: done before the save
	wait $POWERJOB
	echo "nbcloud-warm-waiting"
	while :; do # the base is saved in this read; each clone returns from it
		read -r magic len seed epoch <&3 || usleep 100000
		[ "$magic" = NBCLONE1 ] && break
	done
	t got
	echo "$seed" >/dev/urandom
	nbreseed </dev/urandom || say "CRNG reseed failed"
	t reseeded
	date -u -s "@$epoch" >/dev/null
	cd /
	cpio -i -d <&3 2>/dev/null
	exec 3<&-
	t unpacked
	WARM=1
}

read_clone() { # what the host unpacked (see the top) -> MD_ID MD_HOST CC_HOST NICS, $NB
	local old new n a
	NICS= NSCRIPT=100 MD_ID= MD_HOST= CC_HOST= MACS=
	. $NB/clone.env
	set -- $MACS
	while [ $# -ge 2 ]; do # each NIC gets the clone's MAC, and comes up
		old=$1 new=$2
		shift 2
		for n in /sys/class/net/*; do
			read -r a <"$n/address" && [ "$a" = "$old" ] &&
				ip link set dev "${n##*/}" address "$new" up
		done
	done
	[ -f $NB/user-data ] && read_user_data $NB/user-data
	[ -s $NB/runcmd ] && { echo '#!/bin/sh'; cat $NB/runcmd; } >"$NB/script.runcmd"
}

[ -n "$NBCLOUD_INIT_LIB" ] && return 0

# --- main -----------------------------------------------------------------------------
mount -t devtmpfs -o mode=0755,nosuid dev /dev
mount -t proc -o nosuid,nodev,noexec proc /proc
t init
read -r mods </lib/modules/boot.list
modprobe -a $mods || say "modprobe $mods failed"
t modules
# The initramfs root is a RAM filesystem already: /run and /tmp need no mounts.
mount -t sysfs -o nosuid,nodev,noexec sys /sys
mkdir /dev/pts
mount -t devpts -o gid=5,mode=0620,ptmxmode=0666 devpts /dev/pts
trap 'stop_all poweroff' USR2
trap 'stop_all reboot' TERM INT
trap 'stop_all halt' USR1
watch_power_button & # "ready" waits for it: a shutdown right after ready works
POWERJOB=$!

umask 077 # the host's private key passes through $NB
WARM=
if on_openstack; then
	if find_config_drive && mount -t iso9660 -o ro "$SEEDDEV" $SEED; then
		t seed "$SEEDDEV"
		read_config_drive
	else
		say "no config drive (volume id config-2) found: DHCP, generated host key, no keys"
	fi
elif [ -n "$nbwarm" ] && warm_wait; then
	t seed warm
	read_clone
elif find_seed && mount -t iso9660 -o ro "$SEEDDEV" $SEED; then
	t seed "$SEEDDEV"
	read_seed
else
	say "no NoCloud seed (volume id cidata) found: DHCP, generated host key, no keys"
fi
umask 022
t parsed

# The host key converted for dropbear (or a new one) while the rest goes on.
KEYJOB=
if [ -s $HOSTKEY ]; then
	: # a warm clone's, delivered in dropbear's format
elif [ -s $NB/host_ed25519.pem ]; then
	dropbearconvert openssh dropbear $NB/host_ed25519.pem $HOSTKEY >/dev/null 2>&1 &
	KEYJOB=$!
else
	dropbearkey -t ed25519 -f $HOSTKEY >/dev/null 2>&1 &
	KEYJOB=$!
fi
if [ -s $NB/authorized_keys ]; then
	# once each: Nova's key pair may be in the cloud-config too
	awk '!seen[$0]++' $NB/authorized_keys >/root/.ssh/authorized_keys
else
	say "no ssh_authorized_keys in the seed: nobody can log in"
fi
HOST=${CC_HOST:-${MD_HOST:-tiny}}
HOST=${HOST%%.*}
echo "$HOST" >/proc/sys/kernel/hostname # as hostname(1) does, without a fork
echo "$HOST" >/etc/hostname
printf '127.0.0.1\tlocalhost\n127.0.1.1\t%s\n' "$HOST" >/etc/hosts

configure_network
t network

[ -z "$KEYJOB" ] || wait $KEYJOB || say "host key setup failed"
dropbear -r $HOSTKEY -s -p 22 -P /run/dropbear.pid # -s: keys only, no passwords
i=0 sshd=down
while [ $i -lt 200 ]; do
	listening && { sshd=up; break; }
	usleep 10000
	i=$((i + 1))
done
wait $POWERJOB
echo "nbcloud-ready ip=${IP:-none} hostname=$HOST sshd=$sshd"
[ -z "$WARM" ] || echo "nbcloud-ready ip=${IP:-none} hostname=$HOST sshd=$sshd" >$WARMDEV
WARM= # from here on as any boot
# a clone's lease: once the host has told dnsmasq its reservation, after its own calls
[ -z "$DHCP_LATER" ] || (sleep 2; for l in $DHCP_LATER; do dhcp "${l%%=*}" "${l#*=}"; done) &
t ready

if [ -s $NB/fingerprints ]; then print_fingerprints; else print_fingerprints & fi
run_user_data </dev/null &
serial_shell &

# PID 1 must never exit; a waiting ash reaps every child, orphans included, and runs traps.
while :; do
	sleep 86400 &
	wait $!
done
