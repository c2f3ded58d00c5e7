#!/usr/bin/env bash
# Install the system libraries Qt needs (offscreen and desktop), fonts, and nothing else.
# Fast no-op when everything is present. Needs root (or sudo) only when something is missing.
set -euo pipefail
need=()
have_lib() { ldconfig -p 2>/dev/null | grep -q "$1"; }
have_lib 'libEGL.so.1'          || need+=(libegl1)
have_lib 'libGL.so.1'           || need+=(libgl1)
have_lib 'libOpenGL.so.0'       || need+=(libopengl0)
have_lib 'libxkbcommon.so.0'    || need+=(libxkbcommon0)
have_lib 'libxkbcommon-x11.so.0' || need+=(libxkbcommon-x11-0)
have_lib 'libfontconfig.so.1'   || need+=(libfontconfig1)
have_lib 'libfreetype.so.6'     || need+=(libfreetype6)
have_lib 'libdbus-1.so.3'       || need+=(libdbus-1-3)
have_lib 'libglib-2.0.so.0'     || need+=(libglib2.0-0)
have_lib 'libxcb-cursor.so.0'   || need+=(libxcb-cursor0)
have_lib 'libxcb-icccm.so.4'    || need+=(libxcb-icccm4)
have_lib 'libxcb-keysyms.so.1'  || need+=(libxcb-keysyms1)
have_lib 'libxcb-shape.so.0'    || need+=(libxcb-shape0)
have_lib 'libxcb-xinerama.so.0' || need+=(libxcb-xinerama0)
have_lib 'libxcb-randr.so.0'    || need+=(libxcb-randr0)
have_lib 'libxcb-render-util.so.0' || need+=(libxcb-render-util0)
have_lib 'libxcb-image.so.0'    || need+=(libxcb-image0)
have_lib 'libX11-xcb.so.1'      || need+=(libx11-xcb1)
fc-list 2>/dev/null | grep -qi dejavu || need+=(fonts-dejavu-core fontconfig)
[ ${#need[@]} -eq 0 ] && exit 0
echo "Installing system packages Qt needs: ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
if ! command -v apt-get >/dev/null; then
  echo "error: missing ${need[*]}; install them with your package manager" >&2
  exit 1
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
