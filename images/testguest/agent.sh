#!/bin/sh
# snowflock test guest agent: PID 1 of the busybox test guest.
# Prints a counter on the console (hvc0) so that a clone's console shows whether it continues
# the parent's count, with the clone id it reads from xenstore (snowflock/vmid; 0 in a VM that
# was never cloned), and runs the workload named on the kernel command line:
#   sf.workload=counter   (default) one line per second, sleeping in between
#   sf.workload=spin      one line per second, busy-waiting in between
#   sf.workload=memtest   sf-memtest (memtest.c): fills memory with a pattern and verifies it
#                         every interval, reports "SF-MEM ..." lines; options from
#                         sf.mb (default 64), sf.mode=verify|rewrite|alloc (default verify),
#                         sf.allocmb (default 32), sf.churnmb (write and free that much first), sf.reportfree=1 (run sf-freepages --xenstore
#                         when it finds itself in a clone)
#   sf.interval=N         seconds between lines (counter, spin) or passes (memtest)
#   sf.workload=node      (Node test guest, build-node.sh) loads the vchan modules and runs
#                         `node /opt/snowflock/<sf.program> <sf.args>`, args comma-separated
#   sf.workload=shell     the same with `sh`, for scripts using the sf-* wrappers
#   sf.ip=A.B.C.D/P       (node, shell) give eth0, the guest's vif, this address first
# Mounted already when an init ran before the agent (images/debian/sf-init).
[ -e /proc/self ] || mount -t proc proc /proc
[ -d /sys/kernel ] || mount -t sysfs sysfs /sys
[ -c /dev/null ] || mount -t devtmpfs dev /dev 2>/dev/null
# Every sysrq from dom0 (`xl sysrq D w`: blocked tasks), so a test can ask a stuck guest why.
echo 1 > /proc/sys/kernel/sysrq 2>/dev/null || true

arg() { echo " $(cat /proc/cmdline)" | sed -n "s/.* $1=\\([^ ]*\\).*/\\1/p"; }
WORKLOAD=$(arg sf.workload); WORKLOAD=${WORKLOAD:-counter}
INTERVAL=$(arg sf.interval); INTERVAL=${INTERVAL:-1}

export LD_LIBRARY_PATH=/lib/x86_64-linux-gnu PATH=/bin:/usr/bin
vmid() { xenstore-read snowflock/vmid 2>/dev/null || echo 0; }

echo "SF-AGENT up workload=$WORKLOAD uptime=$(cut -d' ' -f1 /proc/uptime)"
i=0
case $WORKLOAD in
  counter)
    while :; do echo "SF-COUNT $i vmid=$(vmid)"; i=$((i + 1)); sleep "$INTERVAL"; done ;;
  spin)
    while :; do
      echo "SF-COUNT $i vmid=$(vmid)"; i=$((i + 1))
      end=$(( $(cut -d. -f1 /proc/uptime) + INTERVAL ))
      while [ "$(cut -d. -f1 /proc/uptime)" -lt "$end" ]; do :; done
    done ;;
  memtest)
    MB=$(arg sf.mb); MODE=$(arg sf.mode); ALLOCMB=$(arg sf.allocmb)
    set -- --mb "${MB:-64}" --mode "${MODE:-verify}" --alloc-mb "${ALLOCMB:-32}" --interval "$INTERVAL"
    [ "$(arg sf.reportfree)" = 1 ] && set -- "$@" --report-free
    CHURN=$(arg sf.churnmb); [ -n "$CHURN" ] && set -- "$@" --churn-mb "$CHURN"
    sf-memtest "$@"
    echo "SF-AGENT sf-memtest exited rc=$?"; poweroff -f ;;
  node|shell)
    # The Node test guest's modules; the Debian guest's initramfs has loaded them already.
    for m in /lib/modules/*.ko; do [ -e "$m" ] || continue; insmod "$m" || echo "SF-AGENT insmod $m failed"; done
    IP=$(arg sf.ip)
    if [ -n "$IP" ]; then # sf.ip=A.B.C.D/P: the guest's vif (xl vif=...), as eth0
      i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
      ip link set eth0 up && ip addr add "$IP" dev eth0 && echo "SF-AGENT eth0 $IP mac=$(cat /sys/class/net/eth0/address)" \
        || echo "SF-AGENT cannot configure eth0 with $IP"
    fi
    cd /opt/snowflock || { echo "SF-AGENT this image has no Node (build-node.sh)"; poweroff -f; }
    PROGRAM=$(arg sf.program)
    [ "$WORKLOAD" = node ] && RUN=node || RUN=sh
    # shellcheck disable=SC2046 # the comma-separated arguments split on purpose
    $RUN "$PROGRAM" $(arg sf.args | sed 's/,/ /g')
    echo "SF-AGENT $PROGRAM exited rc=$? vmid=$(vmid)"
    # A clone stays until its parent's sf_join destroys it.
    while :; do sleep 3600; done ;;
  *)
    echo "SF-AGENT unknown workload $WORKLOAD"; poweroff -f ;;
esac
