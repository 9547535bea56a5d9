# The two commands of the README:
#   make lab  [NETNS=name]   set up this machine, start libvirt, build the tiny image, open JupyterLab
#   make test                the same set-up, then every test tier (unit, integration, notebooks)
# With NETNS, libvirtd (its bridges, dnsmasq and guests) and the notebook kernel run inside
# that network namespace; JupyterLab is forwarded to 127.0.0.1:$(PORT) on the host.

NETNS      ?=
TEST_NETNS ?= nbcloud-test
PORT       ?= 8888
VENV       := .venv/bin
IN_NETNS    = $(if $(NETNS),ip netns exec $(NETNS))

.PHONY: setup host lab test unit bench down extension

setup:
	bash scripts/setup.sh

host: setup
	$(VENV)/nbcloud host up $(if $(NETNS),--netns $(NETNS))
	$(VENV)/nbcloud image build tiny
	-$(IN_NETNS) $(VENV)/nbcloud doctor   # informational: a problem it names stops nothing

lab: host
	bash scripts/lab.sh "$(NETNS)" "$(PORT)"

# The tests and benchmarks run in their own namespace, set up by the same `host` steps.
test bench: NETNS = $(TEST_NETNS)

test: host
	bash scripts/test.sh "$(NETNS)"

unit: setup
	$(VENV)/python -m pytest -m unit -q

bench: host
	bash scripts/bench.sh "$(NETNS)"

down:
	$(VENV)/nbcloud host down

# Load nbcloud in every IPython kernel of this user (no %load_ext needed).
extension: setup
	mkdir -p $(HOME)/.ipython/profile_default
	grep -qs '"nbcloud"' $(HOME)/.ipython/profile_default/ipython_config.py || \
		cat extensions/ipython_config.py >> $(HOME)/.ipython/profile_default/ipython_config.py
