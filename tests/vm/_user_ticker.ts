// The guest user of the migration scenarios: a shell script that copies a numbered tick on
// CLIPBOARD (logging `uptime n` to /tmp/ticks.log) and pastes PRIMARY (logging `uptime rc text`
// to /tmp/pastes.log) every period, until /tmp/ticking is removed.

/** The script, for `guest.run`. */
export function userTicker(periodMs: number): string {
  return `touch /tmp/ticking; rm -f /tmp/ticks.log /tmp/pastes.log
cat > /tmp/ticker.sh <<'EOF'
i=0
while [ -e /tmp/ticking ]; do
  i=$((i+1)); printf 'guest tick %d' $i > /tmp/tick.txt
  xclip -selection clipboard -i /tmp/tick.txt </dev/null >/dev/null 2>&1
  read up _ </proc/uptime; echo "$up $i" >> /tmp/ticks.log
  sleep ${periodMs / 1000}
done
EOF
cat > /tmp/paster.sh <<'EOF'
while [ -e /tmp/ticking ]; do
  r=$(timeout 2 xclip -selection primary -o 2>/dev/null); rc=$?; read up _ </proc/uptime
  echo "$up $rc $r" >> /tmp/pastes.log; sleep ${periodMs / 1000}
done
EOF
setsid sh /tmp/ticker.sh </dev/null >/dev/null 2>&1 &
setsid sh /tmp/paster.sh </dev/null >/dev/null 2>&1 &`;
}
