# A/B boot for RAUC's U-Boot backend, the common part of every board's boot.scr (the board's
# bootargs.cmd goes in front of it and sets appliance_console and appliance_fdtfile).
#
# BOOT_ORDER lists the root slots to try, BOOT_A_LEFT/BOOT_B_LEFT the attempts each has left.
# This script takes one attempt from the first slot in BOOT_ORDER that has any and saves the
# environment before booting it, so an attempt that hangs or panics has been counted. Linux
# gives the attempts back once the boot was good (`applianced mark-good`, RAUC's Mark "good"), and installing an
# update puts the other slot first (both through fw_setenv and /etc/fw_env.config: the
# environment is uboot.env on the FAT boot partition). A slot out of attempts is skipped.

test -n "${BOOT_ORDER}" || setenv BOOT_ORDER "A B"
test -n "${BOOT_A_LEFT}" || setenv BOOT_A_LEFT 3
test -n "${BOOT_B_LEFT}" || setenv BOOT_B_LEFT 3

setenv rauc_slot
for BOOT_SLOT in "${BOOT_ORDER}"; do
	if test -n "${rauc_slot}"; then
		# skip remaining slots
	elif test "x${BOOT_SLOT}" = "xA"; then
		if test ${BOOT_A_LEFT} -gt 0; then
			setexpr BOOT_A_LEFT ${BOOT_A_LEFT} - 1
			setenv rauc_slot A
			setenv root_label rootfs-a
		fi
	elif test "x${BOOT_SLOT}" = "xB"; then
		if test ${BOOT_B_LEFT} -gt 0; then
			setexpr BOOT_B_LEFT ${BOOT_B_LEFT} - 1
			setenv rauc_slot B
			setenv root_label rootfs-b
		fi
	fi
done

if test -z "${rauc_slot}"; then
	echo "No root slot has boot attempts left: giving both 3 again"
	setenv BOOT_A_LEFT 3
	setenv BOOT_B_LEFT 3
	saveenv
	reset
fi
saveenv

# The slot's kernel (and device tree) are in its own squashfs root, found by partition label,
# so an update replaces kernel and userland together.
part number ${devtype} ${devnum} ${root_label} root_part
part uuid ${devtype} ${devnum}:${root_part} root_uuid
load ${devtype} ${devnum}:${root_part} ${kernel_addr_r} /boot/Image
setenv boot_fdt ${fdtcontroladdr}
if test -n "${appliance_fdtfile}"; then
	load ${devtype} ${devnum}:${root_part} ${fdt_addr_r} /boot/${appliance_fdtfile}
	setenv boot_fdt ${fdt_addr_r}
fi
echo "Booting root slot ${rauc_slot} (${root_label}), ${BOOT_A_LEFT}/${BOOT_B_LEFT} attempts left"
# panic=10: a kernel that cannot mount its root reboots into the next attempt.
setenv bootargs "${appliance_console} root=PARTUUID=${root_uuid} rootfstype=squashfs ro rootwait panic=10 rauc.slot=${rauc_slot}"
booti ${kernel_addr_r} - ${boot_fdt}
echo "Root slot ${rauc_slot} did not boot"
reset
