################################################################################
#
# onnxruntime
#
################################################################################

# The prebuilt library from Microsoft's manylinux_2_28 aarch64 wheel on PyPI, not a source
# build: ONNX Runtime from source is a long CMake build against its own pinned protobuf,
# abseil, eigen, flatbuffers and onnx, which Buildroot has no packages for. The wheel carries
# the same libonnxruntime.so (full C API) that scripts/setup-vision.sh takes from the x86_64
# wheel of the same version for development and `just test`, so the box runs the version the
# tests ran. PyPI rather than the GitHub release tarball because PyPI was reachable where the
# hash below was computed (the file was downloaded and hashed, not copied from a listing).
# Keep the version in step with ORT_VERSION in scripts/setup-vision.sh.
ONNXRUNTIME_VERSION = 1.31.1
ONNXRUNTIME_SOURCE = onnxruntime-$(ONNXRUNTIME_VERSION)-cp311-cp311-manylinux_2_28_aarch64.whl
ONNXRUNTIME_SITE = https://files.pythonhosted.org/packages/02/ee/b173a49293b146b54bd057bf8681a015aef764d8f56d999ad8c6e53ab18d
ONNXRUNTIME_LICENSE = MIT
ONNXRUNTIME_LICENSE_FILES = onnxruntime/LICENSE onnxruntime/ThirdPartyNotices.txt

# A wheel is a zip archive, which Buildroot's generic extract step does not handle.
define ONNXRUNTIME_EXTRACT_CMDS
	$(UNZIP) -d $(@D) $(ONNXRUNTIME_DL_DIR)/$(ONNXRUNTIME_SOURCE) \
		'onnxruntime/LICENSE' 'onnxruntime/ThirdPartyNotices.txt' \
		'onnxruntime/capi/libonnxruntime.so.*'
endef

# libonnxruntime.so is the name applianced looks for in /usr/lib; libonnxruntime.so.1 is the
# library's soname. The wheel's libonnxruntime_providers_shared.so is left out: only
# shared-library execution providers (CUDA, TensorRT) load it, and this build has none.
define ONNXRUNTIME_INSTALL_TARGET_CMDS
	$(INSTALL) -D -m 0755 \
		$(@D)/onnxruntime/capi/libonnxruntime.so.$(ONNXRUNTIME_VERSION) \
		$(TARGET_DIR)/usr/lib/libonnxruntime.so.$(ONNXRUNTIME_VERSION)
	ln -sf libonnxruntime.so.$(ONNXRUNTIME_VERSION) $(TARGET_DIR)/usr/lib/libonnxruntime.so.1
	ln -sf libonnxruntime.so.$(ONNXRUNTIME_VERSION) $(TARGET_DIR)/usr/lib/libonnxruntime.so
endef

$(eval $(generic-package))
