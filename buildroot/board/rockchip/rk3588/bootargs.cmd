# RK3588 part of boot.scr, in front of board/common/boot.cmd. The serial console is UART2 at
# 1.5 Mbaud, as on Rockchip's boards; the device tree is the one the kernel package built from
# rock5b_defconfig's rock5b.dts.
setenv appliance_console "console=ttyS2,1500000n8 earlycon"
setenv appliance_fdtfile rock5b.dtb
