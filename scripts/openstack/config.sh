# The configuration files of the all-in-one cloud, written under /etc/nbcloud-os/ by
# aio.sh (sourced).  The Debian packages' own files in /etc/<service>/ are left as
# installed: every daemon is started with --config-file (or its OS_*_CONFIG_DIR) ours.
# One worker everywhere: the machine has 2 cores and the guests run under TCG.

HOSTNAME_AIO=aio           # the compute host and the Neutron agents' host
KS=http://127.0.0.1:5000   # Keystone, inside the namespace

secrets() { # passwords and ids made once, kept in $STATE/secrets.env
	local f=$STATE/secrets.env name
	(
		umask 077
		touch $f
		for name in ADMIN_PASS NBCLOUD_PASS SERVICE_PASS RABBIT_PASS METADATA_SECRET \
			KEYSTONE_DB_PASS GLANCE_DB_PASS PLACEMENT_DB_PASS NOVA_DB_PASS NEUTRON_DB_PASS \
			CINDER_DB_PASS HEAT_DB_PASS DESIGNATE_DB_PASS; do
			grep -q "^$name=" $f ||
				echo "$name=$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')" >>$f
		done
		for name in CEPH_FSID LIBVIRT_SECRET_UUID; do
			grep -q "^$name=" $f || echo "$name=$(uuidgen)" >>$f
		done
	)
	# shellcheck disable=SC1090
	source $f
}

db_url() { echo "mysql+pymysql://$1:$2@127.0.0.1/$3?charset=utf8"; }

authtoken() { # USER: the [keystone_authtoken] section of a service
	cat <<EOF
[keystone_authtoken]
www_authenticate_uri = $KS/
auth_url = $KS/
memcached_servers = 127.0.0.1:11211
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $SERVICE_PASS
service_token_roles_required = true
EOF
}

neutron_designate() { # Neutron's names published in Designate (NBCOS_DESIGNATE=1)
	keystone_auth designate neutron
	cat <<EOF
url = http://127.0.0.1:9001/v2
allow_reverse_dns_lookup = false
[DEFAULT]
external_dns_driver = designate
EOF
}

keystone_auth() { # SECTION USER: a keystoneauth password section (service to service)
	cat <<EOF
[$1]
auth_url = $KS/
auth_type = password
project_domain_name = Default
user_domain_name = Default
region_name = RegionOne
project_name = service
username = $2
password = $SERVICE_PASS
EOF
}

put() { # FILE: stdin to FILE, only when it changed (mode 640)
	mkdir -p "$(dirname "$1")"
	cat >"$1.new"
	chmod 640 "$1.new"
	if cmp -s "$1.new" "$1"; then rm "$1.new"; else mv "$1.new" "$1"; fi
}

write_configs() {
	local transport="rabbit://openstack:$RABBIT_PASS@127.0.0.1:5672/"
	mkdir -p $STATE/{keystone,glance/images,glance/staging,glance/tasks,nova/instances,neutron,cinder,rabbitmq,mysql} \
		$STATE/lock

	put $ETC/my.cnf <<EOF
[mysqld]
user = root
datadir = $STATE/mysql
socket = $RUN/mysqld.sock
pid-file = $RUN/mysqld.pid
bind-address = 127.0.0.1
port = 3306
skip-name-resolve
log-error = $LOGDIR/mysqld.log
character-set-server = utf8
collation-server = utf8_general_ci
max_connections = 1000
innodb_buffer_pool_size = 96M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
performance_schema = OFF
[client]
socket = $RUN/mysqld.sock
EOF

	put $ETC/rabbitmq/rabbitmq-env.conf <<EOF
NODENAME=rabbit@localhost
NODE_IP_ADDRESS=127.0.0.1
NODE_PORT=5672
MNESIA_BASE=$STATE/rabbitmq/mnesia
LOG_BASE=$LOGDIR
PID_FILE=$RUN/rabbitmq.pid
CONFIG_FILE=$ETC/rabbitmq/rabbitmq.conf
ENABLED_PLUGINS_FILE=$ETC/rabbitmq/enabled_plugins
USE_LONGNAME=false
SERVER_ADDITIONAL_ERL_ARGS="+S 1:1 +A 4"
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_EPMD_PORT=4369
EOF
	put $ETC/rabbitmq/rabbitmq.conf <<EOF
listeners.tcp.default = 127.0.0.1:5672
loopback_users = none
vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 200MB
log.file.level = warning
EOF
	put $ETC/rabbitmq/enabled_plugins <<<"[]."

	put $ETC/keystone/keystone.conf <<EOF
[DEFAULT]
log_file = $LOGDIR/keystone.log
[database]
connection = $(db_url keystone "$KEYSTONE_DB_PASS" keystone)
[token]
provider = fernet
[fernet_tokens]
key_repository = $STATE/keystone/fernet-keys
[fernet_receipts]
key_repository = $STATE/keystone/fernet-keys
[credential]
key_repository = $STATE/keystone/credential-keys
[cache]
enabled = true
backend = dogpile.cache.pymemcache
memcache_servers = 127.0.0.1:11211
EOF

	put $ETC/glance/glance-api.conf <<EOF
[DEFAULT]
bind_host = 127.0.0.1
bind_port = 9292
workers = 1
log_file = $LOGDIR/glance-api.log
enabled_backends = fs:file
transport_url = $transport
[database]
connection = $(db_url glance "$GLANCE_DB_PASS" glance)
[glance_store]
default_backend = fs
[fs]
filesystem_store_datadir = $STATE/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $STATE/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $STATE/glance/tasks
[paste_deploy]
flavor = keystone
config_file = /etc/glance/glance-api-paste.ini
[oslo_concurrency]
lock_path = $STATE/lock/glance
$(authtoken glance)
EOF

	put $ETC/placement/placement.conf <<EOF
[DEFAULT]
log_file = $LOGDIR/placement-api.log
[api]
auth_strategy = keystone
[placement_database]
connection = $(db_url placement "$PLACEMENT_DB_PASS" placement)
$(authtoken placement)
EOF

	put $ETC/nova/nova.conf <<EOF
[DEFAULT]
host = $HOSTNAME_AIO
my_ip = 127.0.0.1
state_path = $STATE/nova
instances_path = $STATE/nova/instances
transport_url = $transport
log_dir = $LOGDIR
enabled_apis = osapi_compute,metadata
osapi_compute_listen = 127.0.0.1
osapi_compute_workers = 1
metadata_listen = 127.0.0.1
metadata_workers = 1
compute_driver = libvirt.LibvirtDriver
force_config_drive = true
resume_guests_state_on_host_boot = true
# one compute host: a resize (nbcloud's instance resize) must be allowed to stay on it
allow_resize_to_same_host = true
# TCG guests are slow to boot; the default of 300 s is kept for the VIF events
instance_build_timeout = 900
rootwrap_config = /etc/nova/rootwrap.conf
[api]
auth_strategy = keystone
[wsgi]
api_paste_config = /etc/nova/api-paste.ini
[api_database]
connection = $(db_url nova "$NOVA_DB_PASS" nova_api)
[database]
connection = $(db_url nova "$NOVA_DB_PASS" nova)
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = 60
[libvirt]
virt_type = qemu
connection_uri = qemu:///system
# Cinder's RBD volumes: QEMU's librbd with the key of client.cinder as a libvirt secret
rbd_user = cinder
rbd_secret_uuid = $LIBVIRT_SECRET_UUID
[vnc]
enabled = false
[spice]
enabled = false
[oslo_concurrency]
lock_path = $STATE/lock/nova
[glance]
region_name = RegionOne
[cinder]
os_region_name = RegionOne
$(authtoken nova)
$(keystone_auth placement nova)
$(keystone_auth neutron neutron)
service_metadata_proxy = true
metadata_proxy_shared_secret = $METADATA_SECRET
$(keystone_auth service_user nova)
send_service_user_token = true
EOF

	# nova-compute reaches the database through the conductor only: no [database] for it
	awk '/^\[/ { skip = ($0 == "[database]" || $0 == "[api_database]") } !skip' \
		$ETC/nova/nova.conf | put $ETC/nova/nova-compute.conf

	put $ETC/neutron/neutron.conf <<EOF
[DEFAULT]
host = $HOSTNAME_AIO
bind_host = 127.0.0.1
bind_port = 9696
core_plugin = ml2
service_plugins = router,port_forwarding
auth_strategy = keystone
transport_url = $transport
state_path = $STATE/neutron
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 1
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
dns_domain = nbcloud.test.
interface_driver = linuxbridge
api_paste_config = /etc/neutron/api-paste.ini
# the agents' .ini files name their own
log_file = $LOGDIR/neutron-server.log
[experimental]
# Debian's Zed carries the later release's gate on the Linux bridge driver
linuxbridge = true
[agent]
root_helper = sudo /usr/bin/neutron-rootwrap /etc/neutron/rootwrap.conf
root_helper_daemon = sudo /usr/bin/neutron-rootwrap-daemon /etc/neutron/rootwrap.conf
report_interval = 30
[database]
connection = $(db_url neutron "$NEUTRON_DB_PASS" neutron)
[oslo_concurrency]
lock_path = $STATE/lock/neutron
$(authtoken neutron)
$(keystone_auth nova nova)
$(designate_wanted && neutron_designate)
EOF
	put $ETC/neutron/ml2_conf.ini <<EOF
[ml2]
type_drivers = flat,vxlan
tenant_network_types = vxlan
mechanism_drivers = linuxbridge,l2population
extension_drivers = port_security,$(designate_wanted && echo dns_domain_ports || echo dns)
[ml2_type_flat]
flat_networks = public
[ml2_type_vxlan]
vni_ranges = 1:1000
[securitygroup]
enable_ipset = true
EOF
	put $ETC/neutron/linuxbridge_agent.ini <<EOF
[DEFAULT]
log_file = $LOGDIR/neutron-linuxbridge-agent.log
[linux_bridge]
bridge_mappings = public:$PUB_BRIDGE
[vxlan]
enable_vxlan = true
local_ip = $TUN_IP
l2_population = true
[securitygroup]
enable_security_group = true
firewall_driver = iptables
EOF
	put $ETC/neutron/dhcp_agent.ini <<EOF
[DEFAULT]
log_file = $LOGDIR/neutron-dhcp-agent.log
interface_driver = linuxbridge
enable_isolated_metadata = true
dnsmasq_dns_servers =
EOF
	put $ETC/neutron/l3_agent.ini <<EOF
[DEFAULT]
log_file = $LOGDIR/neutron-l3-agent.log
interface_driver = linuxbridge
agent_mode = legacy
[agent]
extensions = port_forwarding
EOF
	put $ETC/neutron/metadata_agent.ini <<EOF
[DEFAULT]
log_file = $LOGDIR/neutron-metadata-agent.log
nova_metadata_host = 127.0.0.1
nova_metadata_port = 8775
metadata_proxy_shared_secret = $METADATA_SECRET
metadata_workers = 1
EOF
	cinder_conf
	heat_conf
	designate_conf
}

libvirt_conf() { # the private /etc/libvirt: the host's daemon config, none of its domains
	local d=$STATE/libvirt/etc
	mkdir -p $d
	put $d/libvirt.conf </etc/libvirt/libvirt.conf
	[ -e $d/nwfilter ] || cp -r /etc/libvirt/nwfilter $d/nwfilter
	{
		cat /etc/libvirt/qemu.conf
		cat <<EOF
# nbcloud-os: QEMU runs as root and logs to files (no virtlogd in the namespace), and
# stays in the cloud's mount namespace (no namespace of its own), where it is one of
# the processes that aio.sh down stops.
user = "root"
group = "root"
stdio_handler = "file"
security_driver = "none"
namespaces = []
EOF
	} | put $d/qemu.conf
	{
		cat /etc/libvirt/libvirtd.conf
		echo "# nbcloud-os"
		echo "log_outputs = \"3:file:$LOGDIR/libvirtd.log\""
	} | put $d/libvirtd.conf
}

mysql_init() {
	[ -d $STATE/mysql/mysql ] && return 0
	say "initialising MariaDB in $STATE/mysql"
	quiet mariadb-install-db --defaults-file=$ETC/my.cnf --user=root --datadir=$STATE/mysql \
		--auth-root-authentication-method=socket --skip-test-db
}

rabbit_user() {
	local ctl=(nsx env HOME=$STATE/rabbitmq RABBITMQ_CONF_ENV_FILE=$ETC/rabbitmq/rabbitmq-env.conf
		/usr/lib/rabbitmq/bin/rabbitmqctl -q)
	if ! "${ctl[@]}" list_users | grep -q '^openstack'; then
		quiet "${ctl[@]}" add_user openstack "$RABBIT_PASS"
		quiet "${ctl[@]}" set_permissions openstack '.*' '.*' '.*'
	fi
}

write_clouds_yaml() {
	put $CLOUDS_YAML <<EOF
# nbcloud-os: written by scripts/openstack/aio.sh; the APIs answer inside netns $NS
clouds:
  nbcloud-aio:
    auth:
      auth_url: $KS/v3
      username: nbcloud
      password: $NBCLOUD_PASS
      project_name: nbcloud
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
  nbcloud-aio-admin:
    auth:
      auth_url: $KS/v3
      username: admin
      password: $ADMIN_PASS
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    identity_api_version: 3
    interface: public
EOF
	chmod 644 $CLOUDS_YAML
	# the default place too, unless someone else's file is there
	if [ ! -e /etc/openstack/clouds.yaml ] || grep -q '^# nbcloud-os' /etc/openstack/clouds.yaml; then
		mkdir -p /etc/openstack
		cp $CLOUDS_YAML /etc/openstack/clouds.yaml
	fi
}
