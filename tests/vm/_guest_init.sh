#!/bin/sh
# /init of the real-VM suite's guest (busybox sh as PID 1; _build_guest.sh puts it in the
# initramfs). It starts what a desktop session of a SPICE guest runs, on Xvfb, and two ports of
# our own beside the agent's:
#
#   /dev/virtio-ports/com.redhat.spice.0        the agent's port (spice-vdagentd opens it)
#   /dev/virtio-ports/org.vdagent-streams.ctl   the command agent below
#   /dev/virtio-ports/org.vdagent-streams.log   "<uptime> <source>: <line>" per log line; on the
#                                              host a file (after a migration: the destination's)
#
# Command protocol, one line per request from the host (ids are the host's, without spaces):
#   "<id> x <u|r> <timeout s> <base64 script>"   run the script with sh, as the user guest (uid
#                                                1000, DISPLAY=:0) or as root, killed after the
#                                                timeout; several run at once
#   "<id> p <size> <u|r> <path>" then <size> raw bytes   write a file (owned by guest or root); the
#                                                host sends nothing else until the answer
# and from the guest:
#   "<id> +"                                     a script was received (the host knows nothing is
#                                                left in the port's buffers)
#   "<id> <status> <base64 stdout> <base64 stderr>"   done; status 143: killed by the timeout
# One writer puts the lines on the port (scripts finish in any order). When no host is connected
# the port reads EOF (we poll) and writes block until one connects, so nothing is lost when the
# host reconnects, e.g. to the destination's socket after a live migration.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm /run/spice-vdagentd /run/ctl /tmp/.X11-unix
mount -t devpts devpts /dev/pts
mount -t tmpfs tmpfs /dev/shm
chmod 1777 /tmp /tmp/.X11-unix
chown 1000:1000 /home/guest
hostname vdagent-vm
for m in $(cat /lib/vm-modules/order); do insmod /lib/vm-modules/$m.ko; done

# no udev: /dev/virtio-ports/<name> by hand, once the three ports showed up
mkdir -p /dev/virtio-ports
i=0
while [ "$(ls /sys/class/virtio-ports 2>/dev/null | wc -l)" -lt 3 ] && [ $i -lt 400 ]; do
  sleep 0.05; i=$((i + 1))
done
for p in /sys/class/virtio-ports/vport*; do
  [ -e "$p/name" ] && ln -sf "/dev/${p##*/}" "/dev/virtio-ports/$(cat "$p/name")"
done
ls -l /dev/virtio-ports > /dev/console

# the log: every line through one FIFO to the log port, and kept in /var/log/<source>.log
mkfifo /run/log.fifo
cat /run/log.fifo > /dev/virtio-ports/org.vdagent-streams.log &
exec 9<> /run/log.fifo
tagger() {
  while IFS= read -r line; do
    read -r up _ < /proc/uptime
    echo "$up $1: $line" >&9
    echo "$up $line" >> "/var/log/$1.log"
  done
}
say() { echo "$*" | tagger init; echo "vm: $*" > /dev/console; }
# vm-log TEXT: a line of source "note" in the log, from any user (a marker for tests)
chmod 622 /run/log.fifo
cat > /usr/bin/vm-log << 'VMLOG'
#!/bin/sh
read -r up _ < /proc/uptime
echo "$up note: $*" > /run/log.fifo
VMLOG
chmod 755 /usr/bin/vm-log
# runs a command as the user guest (a file, so that timeout can run it too; util-linux setpriv,
# by its path: this busybox sh prefers its own applets, and busybox setpriv cannot change uids)
cat > /usr/bin/asuser << 'ASUSER'
#!/bin/sh
exec /usr/bin/setpriv --reuid=1000 --regid=1000 --init-groups \
  env HOME=/home/guest USER=guest LOGNAME=guest DISPLAY=:0 LANG=C.UTF-8 "$@"
ASUSER
chmod 755 /usr/bin/asuser
say "kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime)"

( asuser Xvfb :0 -screen 0 1024x768x24 -nolisten tcp -extension GLX 2>&1 | tagger Xvfb ) &
i=0
while [ ! -e /tmp/.X11-unix/X0 ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i + 1)); done
# G_MESSAGES_DEBUG=all: the daemon's g_debug() lines too ("grab discard, serial ...", "client
# grab wins"); -X: no systemd-logind/ConsoleKit, one session
( G_MESSAGES_DEBUG=all spice-vdagentd -x -d -d -X 2>&1 | tagger vdagentd
  echo "spice-vdagentd exited" | tagger init ) &
i=0
while [ ! -e /run/spice-vdagentd/spice-vdagent-sock ] && [ $i -lt 600 ]; do
  sleep 0.05; i=$((i + 1))
done
# the session agent; restarted if it dies (a test sees the new pid, and this line)
( while :; do
    asuser spice-vdagent -x -d 2>&1 | tagger vdagent
    echo "spice-vdagent exited" | tagger init
    sleep 1
  done ) &

# ---- the command agent ------------------------------------------------------------------------
ctl_reader() {
  while :; do
    while IFS=' ' read -r id op a1 a2 a3 <&3; do
      f=/run/ctl/$id
      case "$op" in
        x)
          echo "a $id" >&4
          (
            exec 3>&-
            echo "$a3" | base64 -d > "$f.sh"
            if [ "$a1" = r ]; then
              timeout "$a2" sh "$f.sh" < /dev/null > "$f.out" 2> "$f.err" 4>&- 9>&-
            else
              (cd /home/guest && timeout "$a2" asuser sh "$f.sh") \
                < /dev/null > "$f.out" 2> "$f.err" 4>&- 9>&-
            fi
            echo $? > "$f.rc"
            echo "r $id" >&4
          ) &
          ;;
        p)
          if head -c "$a1" <&3 > "$a3" 2> "$f.err"; then rc=0; else rc=1; fi
          [ "$a2" = u ] && chown 1000:1000 "$a3"
          : > "$f.out"
          echo $rc > "$f.rc"
          echo "r $id" >&4
          ;;
        *) [ -z "$id" ] || echo "unknown request: $id $op" | tagger ctl ;;
      esac
    done
    sleep 0.05 # EOF: no host on the port; a read blocks again once one connects
  done
}
ctl_writer() {
  while read -r kind id <&4; do
    f=/run/ctl/$id
    case "$kind" in
      a) echo "$id +" >&3 ;;
      r)
        { printf '%s %s ' "$id" "$(cat "$f.rc")"; base64 -w0 < "$f.out"; printf ' '
          base64 -w0 < "$f.err"; echo; } >&3
        rm -f "$f.sh" "$f.out" "$f.err" "$f.rc"
        ;;
    esac
  done
}
mkfifo /run/ctl/queue
(
  exec 3<> /dev/virtio-ports/org.vdagent-streams.ctl 4<> /run/ctl/queue
  ctl_writer &
  ctl_reader
) &

# ready once the daemon opened the agent port (it does once the session agent reported its screen)
i=0
while ! grep -q "opening vdagent virtio channel" /var/log/vdagentd.log 2> /dev/null &&
  [ $i -lt 2400 ]; do
  sleep 0.05; i=$((i + 1))
done
if [ $i -lt 2400 ]; then
  say "READY uptime $(cut -d' ' -f1 /proc/uptime)"
else
  say "NOT READY: the daemon never opened its port"
fi
while :; do sleep 3600; done
