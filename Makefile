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
	avahi-daemon avahi-utils procps systemd man-db \
	chromium prometheus

.PHONY: demo test check coverage bench lint deps venv clean install install-config uninstall

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

# The inner loop: unit tests without the fuzzers (CI runs everything through `make test`).
check: venv
	$(PY) -m pytest tests/unit -m "not slow" -q -p no:schemathesis

# Line coverage of src/edgesec by the unit tests alone, per module.
coverage: venv
	$(PY) -m pytest tests/unit -m "not slow" -q -p no:cacheprovider \
		--cov=edgesec --cov-report=term:skip-covered

bench: venv
	@for b in bench/*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

lint: venv
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy --strict src/edgesec

clean:
	rm -rf $(VENV) build *.egg-info

# --- install as a service ----------------------------------------------------------
# `make install` (as root) puts edgesec in its own venv under $(LIBDIR), links it as
# $(BINDIR)/edgesec, installs the systemd unit, shell completion and man page, and a
# config (never overwriting one).  DESTDIR=/some/dir stages everything below that
# directory instead (the venv's scripts then name the final paths: run them with the
# staged venv's python).  See docs/operations.md.
PREFIX ?= /usr/local
DESTDIR ?=
BINDIR := $(PREFIX)/bin
LIBDIR := $(PREFIX)/lib/edgesec
SYSCONFDIR ?= /etc/edgesec
UNITDIR ?= /etc/systemd/system
STATEDIR ?= /var/lib/edgesec
RUNDIR ?= /run/edgesec
MANDIR := $(PREFIX)/share/man/man8
COMPLETIONDIR := $(PREFIX)/share/bash-completion/completions
SVC_VENV := $(LIBDIR)/venv

install: deps install-config
	@test -n "$(DESTDIR)" || test "$$(id -u)" = 0 || { echo "run as root (or set DESTDIR)" >&2; exit 1; }
	install -d -m 0755 $(DESTDIR)$(LIBDIR) $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR) \
		$(DESTDIR)$(COMPLETIONDIR) $(DESTDIR)$(UNITDIR)
	install -d -m 0750 $(DESTDIR)$(STATEDIR)
	install -d -m 0755 $(DESTDIR)$(RUNDIR)
	rm -rf $(DESTDIR)$(SVC_VENV)
	$(PYTHON_SYSTEM) -m venv --system-site-packages $(DESTDIR)$(SVC_VENV)
	$(DESTDIR)$(SVC_VENV)/bin/python -m pip install -q --no-warn-script-location .
	rm -rf build
	@if [ -n "$(DESTDIR)" ]; then \
		sed -i "1s|^#!$(DESTDIR)|#!|" $(DESTDIR)$(SVC_VENV)/bin/*; \
		sed -i "s|$(DESTDIR)$(SVC_VENV)|$(SVC_VENV)|g" $(DESTDIR)$(SVC_VENV)/bin/activate*; fi
	ln -sfn $(SVC_VENV)/bin/edgesec $(DESTDIR)$(BINDIR)/edgesec
	_EDGESEC_COMPLETE=source_bash $(DESTDIR)$(SVC_VENV)/bin/python \
		$(DESTDIR)$(SVC_VENV)/bin/edgesec \
		> $(DESTDIR)$(COMPLETIONDIR)/edgesec
	$(DESTDIR)$(SVC_VENV)/bin/python packaging/manpage.py > $(DESTDIR)$(MANDIR)/edgesec.8
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		packaging/edgesec.service > $(DESTDIR)$(UNITDIR)/edgesec.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/edgesec.service
	@if [ -z "$(DESTDIR)" ] && [ -d /run/systemd/system ]; then systemctl daemon-reload; fi
	@echo "installed: $(BINDIR)/edgesec; start it with: systemctl enable --now edgesec"

# The config (from packaging/config.ini) and a generated vault passphrase, each only
# when missing: an existing one is never overwritten.
install-config:
	install -d -m 0750 $(DESTDIR)$(SYSCONFDIR)
	@if [ -e $(DESTDIR)$(SYSCONFDIR)/config.ini ]; then \
		echo "keeping $(DESTDIR)$(SYSCONFDIR)/config.ini"; \
	else \
		sed -e 's|"/var/lib/edgesec/|"$(STATEDIR)/|' -e 's|"/run/edgesec/|"$(RUNDIR)/|' \
			packaging/config.ini > $(DESTDIR)$(SYSCONFDIR)/config.ini; \
		chmod 0640 $(DESTDIR)$(SYSCONFDIR)/config.ini; fi
	@if [ ! -e $(DESTDIR)$(SYSCONFDIR)/vault-passphrase ]; then \
		(umask 077; $(PYTHON_SYSTEM) -c 'import secrets; print(secrets.token_urlsafe(32))' \
			> $(DESTDIR)$(SYSCONFDIR)/vault-passphrase); \
		echo "generated the vault passphrase $(DESTDIR)$(SYSCONFDIR)/vault-passphrase"; fi

# Removes the program, unit, completion and man page; keeps config and state.
uninstall:
	rm -rf $(DESTDIR)$(SVC_VENV)
	rm -f $(DESTDIR)$(BINDIR)/edgesec $(DESTDIR)$(UNITDIR)/edgesec.service \
		$(DESTDIR)$(MANDIR)/edgesec.8 $(DESTDIR)$(COMPLETIONDIR)/edgesec
	-rmdir $(DESTDIR)$(LIBDIR) 2>/dev/null
	@echo "kept $(SYSCONFDIR) and $(STATEDIR)"
