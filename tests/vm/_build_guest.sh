#!/bin/bash
# Builds the real-VM suite's guest: a Debian kernel and an initramfs that holds this machine's own
# spice-vdagentd, spice-vdagent, Xvfb, xkbcomp, xclip and setpriv (with every library ldd lists),
# busybox for everything else, and _guest_init.sh as /init. No disk image: the guest lives in RAM,
# so QEMU can live-migrate it. Driven by tests/vm/_build.ts, which caches the result; see the
# module documentation of tests/vm/_vm.ts.
#
#   _build_guest.sh manifest
#       prints what a build depends on (hashes of the copied binaries and libraries, size and mtime
#       of the copied data files); _build.ts hashes it with this script and _guest_init.sh
#   _build_guest.sh build OUT KERNEL_DEB BUSYBOX
#       builds OUT/vmlinux (or OUT/vmlinuz if no ELF could be extracted), OUT/initrd.cpio and
#       OUT/info.json. KERNEL_DEB: a linux-image-*-amd64 .deb; BUSYBOX: a static busybox binary or
#       a busybox-static .deb. OUT must not exist.
#
# Needs bash, GNU coreutils/find/grep, dpkg-deb, xz (or the busybox's unxz), ldd. Root is not
# needed: the archive's files are owned by root (cpio -R 0:0), /init fixes the guest user's home.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
die() { echo "_build_guest.sh: $*" >&2; exit 1; }

MULTIARCH="/usr/lib/$(uname -m)-linux-gnu"
# what the guest runs, found on PATH (sbin included: spice-vdagentd lives there)
BINARIES="spice-vdagentd spice-vdagent Xvfb xkbcomp xclip setpriv"
# the X server's keyboard, locale and font data; glibc's C.UTF-8; GTK's image loaders (image/png
# on the clipboard goes through gdk-pixbuf); the SVG loader is left out (librsvg pulls in a lot)
DATA="/usr/share/X11/xkb /usr/share/X11/locale /usr/lib/locale/C.utf8 /usr/share/fonts/X11/misc
  /usr/lib/xorg/protocol.txt $MULTIARCH/gconv/gconv-modules.cache $MULTIARCH/gdk-pixbuf-2.0"
PIXBUF="$MULTIARCH/gdk-pixbuf-2.0/2.10.0"
# kernel modules the guest loads (their dependencies are found from the modules themselves)
MODULES="virtio_pci virtio_console uinput evdev"

binary() {
  PATH="$PATH:/usr/local/sbin:/usr/sbin:/sbin" command -v "$1" ||
    die "missing $1 (apt-get install -y spice-vdagent xvfb xclip x11-xkb-utils util-linux)"
}

# every file copied as is: the binaries, the libraries they and the pixbuf loaders link, the loaders
copied_files() {
  local bins=() b
  for b in $BINARIES; do bins+=("$(binary "$b")"); done
  local loaders; loaders=$(find "$PIXBUF/loaders" -name '*.so' ! -name '*svg*' 2>/dev/null | sort)
  {
    printf '%s\n' "${bins[@]}"
    for b in "${bins[@]}" $loaders; do ldd "$b" 2>/dev/null; done |
      awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'
  } | sort -u
}

cmd_manifest() {
  echo "arch $(uname -m)"
  copied_files | xargs -d "\n" stat -L -c "file %n %s %Y"
  local d
  for d in $DATA; do
    [ -e "$d" ] || { echo "data missing $d"; continue; }
    find "$d" -printf 'data %p %s %T@\n' | sort
  done
}

# the uncompressed kernel inside a bzImage: QEMU boots the ELF through its PVH entry, without the
# real-mode setup and the decompressor (seconds saved under TCG)
extract_vmlinux() {
  local bz=$1 out=$2 off unxz=(xz -dc)
  command -v xz >/dev/null || unxz=("$BUSYBOX_BIN" unxz -c)
  for off in $(LC_ALL=C grep -obUaP '\xfd7zXZ\x00' "$bz" | cut -d: -f1); do
    tail -c +$((off + 1)) "$bz" | "${unxz[@]}" > "$out.tmp" 2>/dev/null || true
    if [ "$(head -c 4 "$out.tmp" | od -An -tx1 | tr -d ' \n')" = 7f454c46 ]; then
      mv "$out.tmp" "$out"
      return 0
    fi
  done
  rm -f "$out.tmp"
  return 1
}

cmd_build() {
  local out=$1 kdeb=$2 bbox=$3
  [ ! -e "$out" ] || die "$out exists"
  [ -s "$kdeb" ] || die "no kernel package $kdeb"
  [ -s "$bbox" ] || die "no busybox $bbox"
  mkdir -p "$out"
  local work="$out/work"
  mkdir -p "$work"
  dpkg-deb -x "$kdeb" "$work/kernel"
  case "$bbox" in
    *.deb) dpkg-deb -x "$bbox" "$work/busybox"; BUSYBOX_BIN="$work/busybox/bin/busybox" ;;
    *) BUSYBOX_BIN="$bbox" ;;
  esac
  [ -x "$BUSYBOX_BIN" ] || die "no busybox binary in $bbox"
  local kver; kver=$(ls "$work/kernel/lib/modules" | head -1)
  [ -n "$kver" ] || die "no modules in $kdeb"
  local kind=vmlinux
  if ! extract_vmlinux "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinux"; then
    echo "_build_guest.sh: no ELF in the bzImage (not xz?): the guest boots the bzImage" >&2
    cp "$work/kernel/boot/vmlinuz-$kver" "$out/vmlinuz"
    kind=vmlinuz
  fi

  local r="$work/root"
  mkdir -p "$r"/usr/{bin,sbin,lib/vm-modules,lib64} \
    "$r"/{proc,sys,dev,run,tmp,etc,home/guest,root,var/lib/xkb,var/log,var/lib/dbus}
  local d
  for d in bin sbin lib lib64; do ln -s "usr/$d" "$r/$d"; done
  chmod 1777 "$r/tmp"

  # modules, dependencies first (from each module's own "depends=", so no depmod is needed)
  local order=""
  add_module() {
    case " $order " in *" $1 "*) return ;; esac
    local f
    f=$(find "$work/kernel/lib/modules/$kver" \( -name "$1.ko" -o -name "$1.ko.xz" \) | head -1)
    if [ -z "$f" ]; then
      grep -q "/$1.ko" "$work/kernel/lib/modules/$kver/modules.builtin" && return
      die "no module $1 in $kver"
    fi
    local ko="$r/usr/lib/vm-modules/$1.ko"
    case "$f" in *.xz) xz -dc "$f" > "$ko" ;; *) cp "$f" "$ko" ;; esac
    local dep
    for dep in $(grep -a -o 'depends=[a-z0-9_,-]*' "$ko" | head -1 |
      sed 's/^depends=//; s/,/ /g'); do
      add_module "$dep"
    done
    order="$order $1"
  }
  local m
  for m in $MODULES; do add_module "$m"; done
  echo $order > "$r/usr/lib/vm-modules/order"

  # binaries and libraries at their own paths; cp --parents with relative paths (the absolute
  # form mishandles symlinked parents in coreutils 9.1)
  local f
  copied_files > "$work/files"
  while read -r f; do (cd / && cp -L --parents "${f#/}" "$r/"); done < "$work/files"
  for d in $DATA; do
    if [ -e "$d" ]; then
      (cd / && cp -a --parents "${d#/}" "$r/")
    else
      echo "_build_guest.sh: warning: no $d" >&2
    fi
  done
  rm -f "$r$PIXBUF"/loaders/*svg*
  if [ -f "$PIXBUF/loaders.cache" ]; then
    awk 'BEGIN { RS = ""; ORS = "\n\n" } !/svg/' "$PIXBUF/loaders.cache" > "$r$PIXBUF/loaders.cache"
  fi

  cp "$BUSYBOX_BIN" "$r/usr/bin/busybox"
  for m in $("$r/usr/bin/busybox" --list); do
    [ -e "$r/usr/bin/$m" ] || [ -L "$r/usr/bin/$m" ] || ln -s busybox "$r/usr/bin/$m"
  done

  printf '%s\n' root:x:0:0:root:/root:/bin/sh guest:x:1000:1000:guest:/home/guest:/bin/sh \
    nobody:x:65534:65534:nobody:/nonexistent:/bin/false > "$r/etc/passwd"
  printf 'root:x:0:\nguest:x:1000:\nnogroup:x:65534:\n' > "$r/etc/group"
  printf 'passwd: files\ngroup: files\nhosts: files\n' > "$r/etc/nsswitch.conf"
  printf '127.0.0.1 localhost\n' > "$r/etc/hosts"
  echo 0123456789abcdef0123456789abcdef > "$r/etc/machine-id"
  cp "$r/etc/machine-id" "$r/var/lib/dbus/machine-id"
  cp "$here/_guest_init.sh" "$r/init"
  chmod 755 "$r/init"

  (cd "$r" && find . | LC_ALL=C sort |
    "$BUSYBOX_BIN" cpio -o -H newc -R 0:0 > "$out/initrd.cpio" 2> /dev/null)
  local size; size=$(stat -c %s "$out/initrd.cpio")
  printf '{"kernelVersion":"%s","kernel":"%s","initrdBytes":%s,"modules":"%s"}\n' \
    "$kver" "$kind" "$size" "${order# }" > "$out/info.json"
  rm -rf "$work"
  echo "_build_guest.sh: built $out: $kind $kver, initrd.cpio $((size / 1048576)) MiB"
}

case "${1:-}" in
  manifest) cmd_manifest ;;
  build) [ $# -eq 4 ] || die "usage: $0 build OUT KERNEL_DEB BUSYBOX"; cmd_build "$2" "$3" "$4" ;;
  *) die "usage: $0 manifest | build OUT KERNEL_DEB BUSYBOX" ;;
esac
