################################################################################
#
# appliance-models
#
################################################################################

# Nothing to download: no single source serves these files. Some come from registry packages,
# two were converted from upstream models, one is only on GitHub (shared/models.md tells each
# origin), and `just setup` gathers them into .local/models/. What this package pins is their
# content: every file must match its sha256 in appliance-models.hash, which
# scripts/check-buildroot.sh keeps equal to the manifests the daemon checks at load time.
APPLIANCE_MODELS_VERSION = 1
APPLIANCE_MODELS_SOURCE =
APPLIANCE_MODELS_LICENSE = Apache-2.0, MIT
APPLIANCE_MODELS_LICENSE_FILES = THIRD-PARTY-NOTICES.md

APPLIANCE_MODELS_FILES_DIR = $(call qstrip,$(BR2_PACKAGE_APPLIANCE_MODELS_DIR))
APPLIANCE_MODELS_MANIFESTS_DIR = $(BR2_EXTERNAL_APPLIANCE_PATH)/../appliance/vision/models
APPLIANCE_MODELS_HASH = $(APPLIANCE_MODELS_PKGDIR)/appliance-models.hash

# The "<model>/<file>" lines of the hash file, as "<model> <file>".
APPLIANCE_MODELS_LIST = \
	sed -n 's|^sha256  *[0-9a-f]\{64\}  *\([^/ ]*\)/\([^ ]*\)$$|\1 \2|p' $(APPLIANCE_MODELS_HASH)

# Gather each model's files and manifest into the build dir, then check every file's sha256
# (sha256sum reads the same lines without their leading "sha256").
define APPLIANCE_MODELS_BUILD_CMDS
	$(INSTALL) -D -m 0644 $(APPLIANCE_MODELS_MANIFESTS_DIR)/THIRD-PARTY-NOTICES.md \
		$(@D)/THIRD-PARTY-NOTICES.md
	$(APPLIANCE_MODELS_LIST) | while read -r model file; do \
		$(INSTALL) -D -m 0644 $(APPLIANCE_MODELS_FILES_DIR)/$$model/$$file \
			$(@D)/models/$$model/$$file || exit 1; \
		$(INSTALL) -D -m 0644 $(APPLIANCE_MODELS_MANIFESTS_DIR)/$$model.toml \
			$(@D)/models/$$model/manifest.toml || exit 1; \
	done
	sed -n 's|^sha256  *\([0-9a-f]\{64\}  *[^/ ]*/[^ ]*\)$$|\1|p' $(APPLIANCE_MODELS_HASH) | \
		(cd $(@D)/models && sha256sum --check --strict --quiet -)
endef

# The notices go with the models: their licences require it of any copy shipped.
define APPLIANCE_MODELS_INSTALL_TARGET_CMDS
	mkdir -p $(TARGET_DIR)/usr/share/appliance/models
	cp -r $(@D)/models/. $(TARGET_DIR)/usr/share/appliance/models/
	$(INSTALL) -m 0644 $(@D)/THIRD-PARTY-NOTICES.md \
		$(TARGET_DIR)/usr/share/appliance/models/THIRD-PARTY-NOTICES.md
endef

$(eval $(generic-package))
