################################################################################
#
# appliance
#
################################################################################

# Built from the checkout this external tree lives in, at whatever state it is in: the image
# is what `git describe` of that checkout says (scripts/image.sh prints it).
APPLIANCE_VERSION = local
APPLIANCE_SITE = $(BR2_EXTERNAL_APPLIANCE_PATH)/..
APPLIANCE_SITE_METHOD = local
# As declared in the workspace's Cargo.toml; the repository ships no licence text to list.
APPLIANCE_LICENSE = Apache-2.0

# The local site method is implemented as an override source dir: the checkout is rsynced
# into the build dir. Leave out what is not source: build outputs (a host target/ would hand
# Buildroot host-linked artefacts), Buildroot's own output (buildroot/output/, inside the
# checkout: it would be copied into itself), and the data and tools `just setup` fetched.
APPLIANCE_OVERRIDE_SRCDIR_RSYNC_EXCLUSIONS = \
	--exclude /target --exclude /buildroot/output --exclude /.local --exclude /.cache \
	--exclude /var --exclude /fuzz/target --exclude /fuzz/corpus --exclude /fuzz/artifacts

APPLIANCE_DEPENDENCIES = host-pkgconf gstreamer1 gst1-plugins-base openssl zlib

# pkg-cargo.mk vendors crates only in its download post-process (support/download/
# cargo-post-process: `cargo vendor --locked VENDOR` into the source tarball, with the
# [source] replacement written to .cargo/config.toml). A local site is rsynced, never
# downloaded, so that step never runs, while the build runs `cargo build --offline --locked`.
# Do the same vendoring here, before each build (a rebuild may follow a Cargo.lock change),
# under the same lock and with the same CARGO_HOME (in DL_DIR, shared with the other cargo
# packages). Unlike a download it happens at build time: the first build of this package
# needs the network for crates.io; later ones use the cached crates. The config is written,
# not appended to, so that rebuilds do not stack [source] sections.
define APPLIANCE_CARGO_VENDOR
	mkdir -p $(@D)/.cargo $(BR_CARGO_HOME)
	cd $(@D) && $(TARGET_MAKE_ENV) CARGO_HOME=$(BR_CARGO_HOME) \
		flock $(BR_CARGO_HOME)/.br-lock \
		cargo vendor --locked --manifest-path Cargo.toml VENDOR \
		> $(@D)/.cargo/config.toml
endef
APPLIANCE_PRE_BUILD_HOOKS += APPLIANCE_CARGO_VENDOR

# pkg-config (gstreamer-sys, openssl-sys, librdkafka's configure) refuses to cross-compile
# unless told; Buildroot's pkg-config already points at the staging sysroot. Build scripts
# that compile C for the build machine need the host compiler, not TARGET_CONFIGURE_OPTS' CC.
APPLIANCE_CARGO_ENV = \
	PKG_CONFIG_ALLOW_CROSS=1 \
	HOST_CC="$(HOSTCC)" \
	HOST_CXX="$(HOSTCXX)"

# The workspace root is a virtual manifest: build the daemon's package, and install its one
# binary by hand (`cargo install --path ./` refuses a virtual manifest).
APPLIANCE_CARGO_BUILD_OPTS = --package applianced --bin applianced

APPLIANCE_UNITS_DIR = $(BR2_EXTERNAL_APPLIANCE_PATH)/../systemd

define APPLIANCE_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/target/$(RUSTC_TARGET_NAME)/$(if $(BR2_ENABLE_DEBUG),debug,release)/applianced \
		$(TARGET_DIR)/usr/bin/applianced
endef

# Every unit in systemd/, and every drop-in for a unit (<unit>.d/*.conf), is installed; which
# units start at boot is their own [Install] section, applied by Buildroot's `systemctl
# preset-all` when the root filesystem is made. Drop-ins for one board only
# (systemd/boards/<board>/) are board/common/post-build.sh's.
define APPLIANCE_INSTALL_INIT_SYSTEMD
	test -f $(APPLIANCE_UNITS_DIR)/applianced.service || \
		{ echo "appliance: $(APPLIANCE_UNITS_DIR)/applianced.service is missing" >&2; exit 1; }
	cd $(APPLIANCE_UNITS_DIR) && \
	for unit in *.service *.mount *.d/*.conf; do \
		[ -e "$$unit" ] || continue; \
		$(INSTALL) -D -m 0644 "$$unit" $(TARGET_DIR)/usr/lib/systemd/system/$$unit || exit 1; \
	done
endef

# Fixed ids, so that files on the data partition keep their owner across updates that add
# other users. The daemon reads the video and render devices (hardware decoders, NPU).
define APPLIANCE_USERS
	appliance 950 appliance 950 * /var/lib/appliance - video,render applianced
endef

# The keyring path is a make expression in .config ($(BR2_EXTERNAL_APPLIANCE_PATH)/...);
# board/common/post-build.sh gets it expanded through the environment.
export APPLIANCE_RAUC_KEYRING = $(call qstrip,$(BR2_PACKAGE_APPLIANCE_RAUC_KEYRING))

$(eval $(cargo-package))
