# QEMU virt part of boot.scr, in front of board/common/boot.cmd: PL011 console, and no device
# tree file (the kernel gets the one QEMU generated, which U-Boot runs on).
setenv appliance_console "console=ttyAMA0"
setenv appliance_fdtfile
