# Block storage for the all-in-one cloud (sourced by aio.sh): Cinder on a one-node Ceph.
#
# This kernel has no device-mapper, iSCSI or NFS, so Cinder's LVM/iSCSI and NFS backends
# cannot run.  RBD needs none of them: QEMU reaches the volumes through its userspace
# librbd (qemu-block-extra), and the one OSD keeps BlueStore in a sparse file.
# Everything Ceph reads from /etc/ceph is ours: the mount namespace binds $ETC/ceph there.
#
# NBCOS_CINDER=0 leaves block storage out (a lighter cloud: no Ceph, no Cinder).

CEPH=$ETC/ceph
CEPH_DATA=$STATE/ceph
CEPH_OSD_SIZE=${CEPH_OSD_SIZE:-20G}   # sparse: what the volumes use is what the disk holds

storage_wanted() { [ "${NBCOS_CINDER:-1}" != 0 ]; }

ceph_conf() {
	put $CEPH/ceph.conf <<EOF
[global]
fsid = $CEPH_FSID
mon_host = [v2:127.0.0.1:3300,v1:127.0.0.1:6789]
public_network = 127.0.0.0/8
auth_cluster_required = cephx
auth_service_required = cephx
auth_client_required = cephx
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 16
osd_pool_default_pgp_num = 16
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_crush_chooseleaf_type = 0
run_dir = $RUN/ceph
log_file = $LOGDIR/ceph-\$name.log
admin_socket = $RUN/ceph/\$cluster-\$name.asok
mon_data = $CEPH_DATA/mon/\$cluster-\$id
mgr_data = $CEPH_DATA/mgr/\$cluster-\$id
osd_data = $CEPH_DATA/osd/\$cluster-\$id
ms_bind_ipv6 = false
auth_allow_insecure_global_id_reclaim = false
[mon]
mon_cluster_log_file = $LOGDIR/ceph-cluster.log
# the store is a file on the machine's disk, which others fill: warn only when nearly full
mon_data_avail_warn = 5
[osd]
osd_objectstore = bluestore
bluestore_block_create = true
bluestore_block_size = $(numfmt --from=iec $CEPH_OSD_SIZE)
bluestore_block_db_create = false
bluestore_block_wal_create = false
osd_memory_target = 939524096
bluestore_cache_autotune = true
osd_op_num_shards = 1
osd_op_num_threads_per_shard = 2
[client]
rbd_cache = true
EOF
	chmod 644 $CEPH/ceph.conf
}

cinder_conf() {
	storage_wanted || return 0
	mkdir -p $CEPH
	ceph_conf
	put $ETC/cinder/cinder.conf <<EOF
[DEFAULT]
host = $HOSTNAME_AIO
my_ip = 127.0.0.1
state_path = $STATE/cinder
log_dir = $LOGDIR
transport_url = rabbit://openstack:$RABBIT_PASS@127.0.0.1:5672/
auth_strategy = keystone
osapi_volume_listen = 127.0.0.1
osapi_volume_workers = 1
api_paste_config = /etc/cinder/api-paste.ini
rootwrap_config = /etc/cinder/rootwrap.conf
enabled_backends = ceph
default_volume_type = ceph
[database]
connection = $(db_url cinder "$CINDER_DB_PASS" cinder)
[oslo_concurrency]
lock_path = $STATE/lock/cinder
[ceph]
volume_driver = cinder.volume.drivers.rbd.RBDDriver
volume_backend_name = ceph
rbd_pool = volumes
rbd_ceph_conf = /etc/ceph/ceph.conf
rbd_user = cinder
rbd_secret_uuid = $LIBVIRT_SECRET_UUID
rbd_flatten_volume_from_snapshot = false
report_discard_supported = true
$(authtoken cinder)
$(keystone_auth nova nova)
$(keystone_auth service_user cinder)
send_service_user_token = true
EOF
}

ceph() { nsx ceph --connect-timeout 20 "$@"; }

ceph_mkfs() { # the mon, mgr and osd of a new cluster: once
	local tmp=$CEPH_DATA/tmp
	mkdir -p $tmp $CEPH_DATA/mon/ceph-a $CEPH_DATA/mgr/ceph-x
	[ -s $CEPH/ceph.client.admin.keyring ] || ceph-authtool --create-keyring \
		$CEPH/ceph.client.admin.keyring --gen-key -n client.admin \
		--cap mon 'allow *' --cap osd 'allow *' --cap mds 'allow *' --cap mgr 'allow *'
	ceph-authtool --create-keyring $tmp/mon.keyring --gen-key -n mon. --cap mon 'allow *'
	ceph-authtool $tmp/mon.keyring --import-keyring $CEPH/ceph.client.admin.keyring
	monmaptool --create --fsid "$CEPH_FSID" --addv a '[v2:127.0.0.1:3300,v1:127.0.0.1:6789]' \
		$tmp/monmap
	nsx ceph-mon --mkfs -i a --monmap $tmp/monmap --keyring $tmp/mon.keyring
	rm -rf $tmp
}

ceph_osd_mkfs() { # after the mon answers: the one OSD, once
	local osd_uuid id
	osd_uuid=$(uuidgen)
	id=$(ceph osd new "$osd_uuid")
	echo "$id" >$CEPH_DATA/osd-id
	mkdir -p $CEPH_DATA/osd/ceph-$id
	ceph auth get-or-create osd.$id mon 'allow profile osd' mgr 'allow profile osd' \
		osd 'allow *' -o $CEPH_DATA/osd/ceph-$id/keyring
	nsx ceph-osd -i "$id" --mkfs --osd-uuid "$osd_uuid"
}

ceph_pools() { # the volumes pool and Cinder's key, once
	ceph osd pool create volumes 16 16
	ceph osd pool set volumes size 1 --yes-i-really-mean-it
	nsx rbd pool init volumes
	ceph auth get-or-create client.cinder mon 'profile rbd' osd 'profile rbd pool=volumes' \
		mgr 'profile rbd pool=volumes' -o $CEPH/ceph.client.cinder.keyring
	chmod 644 $CEPH/ceph.client.cinder.keyring
}

libvirt_secret() { # the cinder key as a libvirt secret of Nova's libvirtd
	local uuid=$LIBVIRT_SECRET_UUID key
	key=$(ceph auth get-key client.cinder)
	if ! nsx virsh secret-list | grep -q "$uuid"; then
		cat >$RUN/secret.xml <<EOF
<secret ephemeral='no' private='no'>
  <uuid>$uuid</uuid>
  <usage type='ceph'><name>client.cinder secret</name></usage>
</secret>
EOF
		nsx virsh secret-define $RUN/secret.xml
		rm $RUN/secret.xml
	fi
	nsx virsh secret-set-value "$uuid" --base64 "$key" >/dev/null
}

storage_up() {
	storage_wanted || { say "block storage left out (NBCOS_CINDER=0)"; return 0; }
	mkdir -p $RUN/ceph
	ever ceph-mkfs quiet ceph_mkfs
	WATCH=$CEPH/ceph.conf start ceph-mon ceph-mon -f -i a
	wait_for ceph-mon 60 ceph -s
	[ -s $CEPH_DATA/mgr/ceph-x/keyring ] || quiet ceph auth get-or-create mgr.x \
		mon 'allow profile mgr' osd 'allow *' mds 'allow *' -o $CEPH_DATA/mgr/ceph-x/keyring
	WATCH=$CEPH/ceph.conf start ceph-mgr ceph-mgr -f -i x
	[ -s $CEPH_DATA/osd-id ] || quiet ceph_osd_mkfs
	WATCH=$CEPH/ceph.conf start ceph-osd ceph-osd -f -i "$(cat $CEPH_DATA/osd-id)"
	wait_for ceph-osd 120 osd_up
	ever ceph-pools quiet ceph_pools
	quiet libvirt_secret
	db_create cinder cinder "$CINDER_DB_PASS"
	once cinder-db quiet nsx cinder-manage --config-file $ETC/cinder/cinder.conf db sync
	start cinder-api cinder-api --config-file $ETC/cinder/cinder.conf
	start cinder-scheduler cinder-scheduler --config-file $ETC/cinder/cinder.conf
	start cinder-volume cinder-volume --config-file $ETC/cinder/cinder.conf
	wait_for cinder-api 120 http_ok http://127.0.0.1:8776/
}

osd_up() { ceph osd stat | grep -q '1 up'; }
