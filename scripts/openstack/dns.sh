# Designate on BIND 9 (sourced by aio.sh), opt-in: NBCOS_DESIGNATE=1 aio.sh up.
# named answers on 127.0.0.1:53 inside the namespace (recursion off, zones added by
# Designate through rndc), Designate's mdns on 127.0.0.1:5354 is its primary, the API on
# 127.0.0.1:9001.  Neutron then publishes the ports' and floating IPs' names in Designate
# (external_dns_driver = designate, extension driver dns_domain_ports).

designate_wanted() { [ "${NBCOS_DESIGNATE:-0}" = 1 ]; }

DESIGNATE_PACKAGES=(designate-api designate-central designate-worker designate-producer
	designate-mdns bind9 bind9-utils bind9-dnsutils python3-designateclient)

designate_conf() {
	designate_wanted || return 0
	mkdir -p $STATE/bind $ETC/bind
	[ -s $ETC/bind/rndc.key ] || tsig-keygen -a hmac-sha256 rndc-key >$ETC/bind/rndc.key
	chmod 640 $ETC/bind/rndc.key
	put $ETC/bind/named.conf <<EOF
include "$ETC/bind/rndc.key";
options {
	directory "$STATE/bind";
	pid-file "$RUN/named.pid";
	listen-on port 53 { 127.0.0.1; };
	listen-on-v6 { none; };
	allow-new-zones yes;
	allow-query { any; };
	recursion no;
	dnssec-validation no;
	minimal-responses yes;
};
controls { inet 127.0.0.1 port 953 allow { 127.0.0.1; } keys { "rndc-key"; }; };
logging { channel default_log { file "$LOGDIR/named.log"; severity info; };
	category default { default_log; }; };
EOF
	put $ETC/bind/rndc.conf <<EOF
include "$ETC/bind/rndc.key";
options { default-key "rndc-key"; default-server 127.0.0.1; default-port 953; };
EOF
	put $ETC/designate/designate.conf <<EOF
[DEFAULT]
transport_url = rabbit://openstack:$RABBIT_PASS@127.0.0.1:5672/
log_dir = $LOGDIR
root_helper = sudo designate-rootwrap /etc/designate/rootwrap.conf
[storage:sqlalchemy]
connection = $(db_url designate "$DESIGNATE_DB_PASS" designate)
[service:api]
listen = 127.0.0.1:9001
api_base_uri = http://127.0.0.1:9001/
auth_strategy = keystone
enable_api_v2 = true
enable_api_admin = true
enabled_extensions_admin = quotas, reports
workers = 1
[service:central]
workers = 1
[service:worker]
workers = 1
[service:producer]
workers = 1
[service:mdns]
listen = 127.0.0.1:5354
workers = 1
[oslo_concurrency]
lock_path = $STATE/lock/designate
$(authtoken designate)
EOF
	put $ETC/designate/pools.yaml <<EOF
- name: default
  description: BIND 9 in the namespace
  attributes: {}
  ns_records:
    - hostname: ns1.nbcloud.test.
      priority: 1
  nameservers:
    - host: 127.0.0.1
      port: 53
  targets:
    - type: bind9
      description: named on 127.0.0.1
      masters:
        - host: 127.0.0.1
          port: 5354
      options:
        host: 127.0.0.1
        port: 53
        rndc_host: 127.0.0.1
        rndc_port: 953
        rndc_key_file: $ETC/bind/rndc.key
        rndc_config_file: $ETC/bind/rndc.conf
EOF
}

designate_up() {
	designate_wanted || return 0
	WATCH=$ETC/bind/named.conf start named named -g -c $ETC/bind/named.conf
	wait_for named 30 nsx rndc -c $ETC/bind/rndc.conf status
	db_create designate designate "$DESIGNATE_DB_PASS"
	once designate-db quiet nsx designate-manage --config-file $ETC/designate/designate.conf \
		database sync
	local d
	for d in central worker producer mdns api; do
		start designate-$d designate-$d --config-file $ETC/designate/designate.conf
	done
	wait_for designate-api 90 http_ok http://127.0.0.1:9001/
	if newer designate-pools $ETC/designate/pools.yaml; then
		quiet nsx designate-manage --config-file $ETC/designate/designate.conf pool update \
			--file $ETC/designate/pools.yaml
		touch $STATE/stamps/designate-pools
	fi
}
