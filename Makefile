# freezefs: build and install like a C library.
#
#   make                      build (release) into target/make
#   make install              install under PREFIX (default /usr/local)
#   make install DESTDIR=/tmp/stage PREFIX=/usr
#   make uninstall
#
# It also installs freezefs-holder.socket and .service into SYSTEMDUNITDIR
# (default PREFIX/lib/systemd/system); enable them with
#   systemctl daemon-reload && systemctl enable --now freezefs-holder.socket
# and freezefs-guard.service, which thaws freezes other tools forget:
#   systemctl enable --now freezefs-guard.service
#
#   make install-group        also freezefs-group(8), consistency groups on
#                             etcd, and its agent's unit (it needs protoc:
#                             apt install protobuf-compiler libprotobuf-dev)
#
#   make deb                  Debian packages into target/deb/: freezefs,
#                             libfreezefs-dev and freezefs-group (it needs
#                             debhelper: scripts/install-deps deb)
#
# The installed library looks for its holder in $(LIBEXECDIR)/freezefs, baked
# in at build time: build and install with the same PREFIX/LIBEXECDIR.

PREFIX      ?= /usr/local
EXEC_PREFIX ?= $(PREFIX)
LIBDIR      ?= $(EXEC_PREFIX)/lib
INCLUDEDIR  ?= $(PREFIX)/include
SBINDIR     ?= $(EXEC_PREFIX)/sbin
LIBEXECDIR  ?= $(EXEC_PREFIX)/libexec
MANDIR      ?= $(PREFIX)/share/man
DOCDIR      ?= $(PREFIX)/share/doc/freezefs
PKGCONFIGDIR ?= $(LIBDIR)/pkgconfig
# The LD_PRELOAD shim: no program links to it, so a private directory will do.
PRELOADDIR  ?= $(LIBDIR)
SYSTEMDUNITDIR ?= $(PREFIX)/lib/systemd/system
SYSCONFDIR  ?= /etc
RUNDIR      ?= /run/freezefs
DESTDIR     ?=
CARGO       ?= cargo

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
MAJOR   := $(firstword $(subst ., ,$(VERSION)))
SONAME  := libfreezefs.so.$(MAJOR)
BUILD   ?= target/make
OUT     := $(BUILD)/release
# Libraries outside the loader's own directories are found through an rpath
# that pkg-config's Libs carry (make install also runs ldconfig, which covers
# /usr/local/lib but not a PREFIX of one's own).
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)
LOADER_DIRS := /lib /usr/lib /lib64 /usr/lib64 $(if $(MULTIARCH),/lib/$(MULTIARCH) /usr/lib/$(MULTIARCH))
PC_RPATH := $(if $(filter $(LIBDIR),$(LOADER_DIRS)),, -Wl,-rpath,$${libdir})
ENV     := CARGO_TARGET_DIR=$(BUILD) FREEZEFS_SONAME=$(SONAME) FREEZEFS_LIBEXECDIR=$(LIBEXECDIR)/freezefs
# The shim is built apart, without FREEZEFS_SONAME: cargo hands the library
# build script's SONAME argument to every cdylib that depends on it, and the
# shim carrying libfreezefs.so.1 would make ldconfig link that name to it.
SHIM_ENV := CARGO_TARGET_DIR=$(BUILD)/shim FREEZEFS_LIBEXECDIR=$(LIBEXECDIR)/freezefs
SHIM    := $(BUILD)/shim/release/libfreezefs_preload.so

.PHONY: all build install uninstall clean group install-group install-group-unit deb
all: build

build:
	$(ENV) $(CARGO) build --release --workspace --exclude freezefs-preload --exclude freezefs-group --bins --lib
	env -u FREEZEFS_SONAME $(SHIM_ENV) $(CARGO) build --release -p freezefs-preload
	$(ENV) $(CARGO) rustc --release -p freezefs --lib --crate-type staticlib -- --print native-static-libs 2>&1 \
	  | sed -n 's/.*native-static-libs: //p' | tail -n 1 > $(BUILD)/libs-private
	for pc in freezefs freezefs-compat; do \
	  sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@LIBDIR@|$(LIBDIR)|' -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|' \
	      -e 's|@VERSION@|$(VERSION)|' -e "s|@LIBS_PRIVATE@|$$(cat $(BUILD)/libs-private)|" \
	      -e 's|@RPATH@|$(PC_RPATH)|' \
	      $$pc.pc.in > $(BUILD)/$$pc.pc || exit 1; \
	done

install: build
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(PKGCONFIGDIR) $(DESTDIR)$(INCLUDEDIR)/freezefs/compat/sys \
	  $(DESTDIR)$(SBINDIR) $(DESTDIR)$(LIBEXECDIR)/freezefs $(DESTDIR)$(MANDIR)/man3 $(DESTDIR)$(MANDIR)/man8 \
	  $(DESTDIR)$(DOCDIR)/examples/hooks $(DESTDIR)$(DOCDIR)/examples/hold
	install -m 0755 $(OUT)/libfreezefs.so $(DESTDIR)$(LIBDIR)/libfreezefs.so.$(VERSION)
	ln -sf libfreezefs.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libfreezefs.so
	install -m 0644 $(OUT)/libfreezefs.a $(DESTDIR)$(LIBDIR)/libfreezefs.a
	install -d $(DESTDIR)$(PRELOADDIR)
	install -m 0755 $(SHIM) $(DESTDIR)$(PRELOADDIR)/libfreezefs_preload.so
	install -m 0644 $(BUILD)/freezefs.pc $(BUILD)/freezefs-compat.pc $(DESTDIR)$(PKGCONFIGDIR)/
	install -m 0644 include/freezefs.h $(DESTDIR)$(INCLUDEDIR)/freezefs.h
	install -m 0644 include/compat/sys/mount.h $(DESTDIR)$(INCLUDEDIR)/freezefs/compat/sys/mount.h
	install -m 0755 $(OUT)/freezefs $(OUT)/thawfs $(DESTDIR)$(SBINDIR)/
	install -m 0755 $(OUT)/freezefs-holder $(DESTDIR)$(LIBEXECDIR)/freezefs/freezefs-holder
	install -m 0644 man/freezefs.3 $(DESTDIR)$(MANDIR)/man3/freezefs.3
	install -m 0644 man/freezefs.8 man/thawfs.8 $(DESTDIR)$(MANDIR)/man8/
	sed 's|/usr/local/lib/libfreezefs_preload.so|$(PRELOADDIR)/libfreezefs_preload.so|' \
	  examples/qemu-guest-agent.conf > $(DESTDIR)$(DOCDIR)/examples/qemu-guest-agent.conf
	chmod 0644 $(DESTDIR)$(DOCDIR)/examples/qemu-guest-agent.conf
	install -m 0755 examples/hooks/50-postgresql $(DESTDIR)$(DOCDIR)/examples/hooks/50-postgresql
	install -m 0755 examples/hold/50-mariadb $(DESTDIR)$(DOCDIR)/examples/hold/50-mariadb
	install -m 0755 examples/etcd-rbac.sh $(DESTDIR)$(DOCDIR)/examples/etcd-rbac.sh
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	for unit in freezefs-holder.socket freezefs-holder.service freezefs-guard.service; do \
	  sed -e 's|@HOLDER@|$(LIBEXECDIR)/freezefs/freezefs-holder|' -e 's|@RUNDIR@|$(RUNDIR)|' \
	      -e 's|@SBINDIR@|$(SBINDIR)|' \
	      systemd/$$unit.in > $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit || exit 1; \
	  chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/$$unit; \
	done
	@# Into the live system (no DESTDIR): the loader's cache must learn of
	@# the new library, or programs linked to it do not start.
	@if [ -z "$(DESTDIR)" ] && command -v ldconfig >/dev/null 2>&1; then \
	  ldconfig && echo "make install: ran ldconfig: the loader now finds $(SONAME)$(if $(PC_RPATH), in its cache if $(LIBDIR) is in /etc/ld.so.conf; else through the rpath that pkg-config gives,)"; \
	fi

# freezefs-group: a crate of its own (etcd's gRPC client, tokio), never
# linked into libfreezefs.
group:
	$(ENV) $(CARGO) build --release -p freezefs-group

install-group: group install-group-unit
	install -d $(DESTDIR)$(SBINDIR) $(DESTDIR)$(MANDIR)/man8
	install -m 0755 $(OUT)/freezefs-group $(DESTDIR)$(SBINDIR)/freezefs-group
	install -m 0644 man/freezefs-group.8 $(DESTDIR)$(MANDIR)/man8/

install-group-unit:
	install -d $(DESTDIR)$(SYSTEMDUNITDIR)
	sed -e 's|@SBINDIR@|$(SBINDIR)|' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|' \
	  systemd/freezefs-group-agent.service.in > $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-group-agent.service
	chmod 0644 $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-group-agent.service

uninstall:
	rm -f $(DESTDIR)$(LIBDIR)/libfreezefs.so.$(VERSION) $(DESTDIR)$(LIBDIR)/$(SONAME) \
	  $(DESTDIR)$(LIBDIR)/libfreezefs.so $(DESTDIR)$(LIBDIR)/libfreezefs.a \
	  $(DESTDIR)$(PRELOADDIR)/libfreezefs_preload.so $(DESTDIR)$(PKGCONFIGDIR)/freezefs.pc \
	  $(DESTDIR)$(PKGCONFIGDIR)/freezefs-compat.pc \
	  $(DESTDIR)$(INCLUDEDIR)/freezefs.h $(DESTDIR)$(INCLUDEDIR)/freezefs/compat/sys/mount.h \
	  $(DESTDIR)$(SBINDIR)/freezefs $(DESTDIR)$(SBINDIR)/thawfs \
	  $(DESTDIR)$(LIBEXECDIR)/freezefs/freezefs-holder \
	  $(DESTDIR)$(MANDIR)/man3/freezefs.3 $(DESTDIR)$(MANDIR)/man8/freezefs.8 $(DESTDIR)$(MANDIR)/man8/thawfs.8 \
	  $(DESTDIR)$(DOCDIR)/examples/qemu-guest-agent.conf $(DESTDIR)$(DOCDIR)/examples/hooks/50-postgresql \
	  $(DESTDIR)$(DOCDIR)/examples/hold/50-mariadb \
	  $(DESTDIR)$(DOCDIR)/examples/etcd-rbac.sh \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-holder.socket $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-holder.service \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-guard.service \
	  $(DESTDIR)$(SBINDIR)/freezefs-group $(DESTDIR)$(MANDIR)/man8/freezefs-group.8 \
	  $(DESTDIR)$(SYSTEMDUNITDIR)/freezefs-group-agent.service
	-rmdir $(DESTDIR)$(INCLUDEDIR)/freezefs/compat/sys $(DESTDIR)$(INCLUDEDIR)/freezefs/compat \
	  $(DESTDIR)$(INCLUDEDIR)/freezefs $(DESTDIR)$(LIBEXECDIR)/freezefs \
	  $(DESTDIR)$(DOCDIR)/examples/hooks $(DESTDIR)$(DOCDIR)/examples/hold \
	  $(DESTDIR)$(DOCDIR)/examples $(DESTDIR)$(DOCDIR) 2>/dev/null

# debhelper with the debian/ directory: it runs `make install` into a
# staging tree and writes the maintainer scripts that enable the units and
# run ldconfig. Everything it writes stays under target/deb.
DEB_DIR := target/deb
deb:
	mkdir -p $(DEB_DIR)
	dpkg-buildpackage -b -us -uc \
	  --buildinfo-option=-u$(DEB_DIR) --changes-option=-u$(DEB_DIR) \
	  --buildinfo-file=$(DEB_DIR)/freezefs_$(VERSION)_$$(dpkg --print-architecture).buildinfo \
	  --changes-file=$(DEB_DIR)/freezefs_$(VERSION)_$$(dpkg --print-architecture).changes
	@ls $(DEB_DIR)/*.deb

clean:
	rm -rf $(BUILD)
