# edgesec developer entry points. Every target installs what is missing first.
# Debian packages are installed with apt-get (as root); Python packages go into .venv.
SHELL := /bin/bash
PYTHON_SYSTEM ?= /usr/bin/python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

# Real peers the gateway drives or that the tests talk to.
DEB_PACKAGES := python3 python3-venv python3-dev python3-nftables gcc \
	iproute2 nftables iptables dnsmasq-base hostapd wpasupplicant \
	freeradius freeradius-utils softhsm2 socat netcat-openbsd \
	tcpdump tshark libpcap0.8 libpcap-dev udhcpc busybox iperf3 \
	avahi-daemon avahi-utils procps \
	chromium prometheus

.PHONY: demo test bench lint deps venv clean

deps:
	@missing=$$(for p in $(DEB_PACKAGES); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:" $$missing; \
		if [ "$$(id -u)" != 0 ]; then echo "run as root to install Debian packages" >&2; exit 1; fi; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -q && apt-get install -y -q --no-install-recommends $$missing; \
	fi

# --system-site-packages: Debian's python3-nftables (the libnftables binding) is not on PyPI.
$(STAMP): pyproject.toml | deps
	@test -x $(PY) || $(PYTHON_SYSTEM) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $(STAMP)

venv: deps $(STAMP)

demo: venv
	$(VENV)/bin/edgesec demo

test: venv
	$(PY) -m pytest tests

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check src tests bench

clean:
	rm -rf $(VENV) build *.egg-info
