# Heat (sourced by aio.sh): the orchestration API, so that nbcloud's `%cloud export heat`
# can be checked against a real engine.  NBCOS_HEAT=0 leaves it out.
# (Octavia and Designate are not here: see README.md.)

heat_wanted() { [ "${NBCOS_HEAT:-1}" != 0 ]; }

heat_conf() {
	heat_wanted || return 0
	put $ETC/heat/heat.conf <<EOF2
[DEFAULT]
transport_url = rabbit://openstack:$RABBIT_PASS@127.0.0.1:5672/
log_dir = $LOGDIR
num_engine_workers = 1
region_name_for_services = RegionOne
stack_user_domain_name = heat
stack_domain_admin = heat_domain_admin
stack_domain_admin_password = $SERVICE_PASS
heat_metadata_server_url = http://127.0.0.1:8000
heat_waitcondition_server_url = http://127.0.0.1:8000/v1/waitcondition
[database]
connection = $(db_url heat "$HEAT_DB_PASS" heat)
[paste_deploy]
api_paste_config = /etc/heat/api-paste.ini
[heat_api]
bind_host = 127.0.0.1
bind_port = 8004
workers = 1
[clients_keystone]
auth_uri = $KS
[ec2authtoken]
auth_uri = $KS/v3
[oslo_concurrency]
lock_path = $STATE/lock/heat
$(authtoken heat)
[trustee]
auth_type = password
auth_url = $KS/
username = heat
password = $SERVICE_PASS
user_domain_name = Default
EOF2
}

heat_up() {
	heat_wanted || { say "Heat left out (NBCOS_HEAT=0)"; return 0; }
	db_create heat heat "$HEAT_DB_PASS"
	once heat-db quiet nsx heat-manage --config-file $ETC/heat/heat.conf db_sync
	start heat-engine heat-engine --config-file $ETC/heat/heat.conf
	start heat-api heat-api --config-file $ETC/heat/heat.conf
	wait_for heat-api 90 http_ok http://127.0.0.1:8004/
}
