################################################################################
#
# zlmediakit
#
################################################################################

# ZLMediaKit publishes no release tarballs; this is the commit vcpkg's zlmediakit port
# (version 2024-09-29) builds. The submodules (ZLToolKit, media-server, jsoncpp, the web
# assistant) are pinned by that commit and fetched with it.
ZLMEDIAKIT_VERSION = 6b2fcf79435656be7797d396203adcc6c11ecc52
ZLMEDIAKIT_SITE = https://github.com/ZLMediaKit/ZLMediaKit.git
ZLMEDIAKIT_SITE_METHOD = git
ZLMEDIAKIT_GIT_SUBMODULES = YES
ZLMEDIAKIT_LICENSE = MIT
ZLMEDIAKIT_LICENSE_FILES = LICENSE
ZLMEDIAKIT_DEPENDENCIES = openssl

# The archive Buildroot makes from the git checkout has no published hash, and no network
# was available where this package was written to make one (see zlmediakit.hash). Until it
# is recorded, the commit id above is what pins the source, submodules included.
BR_NO_CHECK_HASH_FOR += $(ZLMEDIAKIT_SOURCE)

# Only the server, with what the appliance uses: GB28181 RTP (RTPPROXY), MP4 recording, HLS.
# Off: the C API and tests (not shipped), WebRTC and SRT (not used yet), FFmpeg (transcoding),
# the jemalloc download at configure time, and the usage report upstream builds send by
# default (DISABLE_REPORT): a box phones home to no one it was not configured for.
ZLMEDIAKIT_CONF_OPTS = \
	-DENABLE_SERVER=ON \
	-DENABLE_RTPPROXY=ON \
	-DENABLE_MP4=ON \
	-DENABLE_HLS=ON \
	-DENABLE_OPENSSL=ON \
	-DENABLE_API=OFF \
	-DENABLE_TESTS=OFF \
	-DENABLE_PLAYER=OFF \
	-DENABLE_WEBRTC=OFF \
	-DENABLE_SRT=OFF \
	-DENABLE_SCTP=OFF \
	-DENABLE_FFMPEG=OFF \
	-DENABLE_X264=OFF \
	-DENABLE_FAAC=OFF \
	-DENABLE_MYSQL=OFF \
	-DENABLE_ASAN=OFF \
	-DENABLE_JEMALLOC_STATIC=OFF \
	-DENABLE_MEM_DEBUG=OFF \
	-DDISABLE_REPORT=ON \
	-DCMAKE_DISABLE_FIND_PACKAGE_GIT=ON \
	-DCMAKE_DISABLE_FIND_PACKAGE_JEMALLOC=ON \
	-DCMAKE_DISABLE_FIND_PACKAGE_SDL2=ON

# CMake's install step puts MediaServer in /usr/bin, where zlmediakit.service runs it. The
# upstream default configuration goes with it as a reference; the box's own configuration is
# the rootfs overlay's /etc/zlmediakit/config.ini.
define ZLMEDIAKIT_INSTALL_DEFAULT_CONFIG
	$(INSTALL) -D -m 0644 $(@D)/conf/config.ini \
		$(TARGET_DIR)/usr/share/zlmediakit/config.ini
endef
ZLMEDIAKIT_POST_INSTALL_TARGET_HOOKS += ZLMEDIAKIT_INSTALL_DEFAULT_CONFIG

# Its own user, so that a compromised media server cannot touch applianced's store.
define ZLMEDIAKIT_USERS
	zlmediakit 951 zlmediakit 951 * /var/lib/zlmediakit - - ZLMediaKit MediaServer
endef

$(eval $(cmake-package))
