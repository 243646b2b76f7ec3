#!/bin/sh
# Infernet installer: downloads a release, checks its sha256, installs it and tests it.
#
#   curl -fsSL https://infernet.tech/install.sh | sh
#   curl -fsSL https://infernet.tech/install.sh | sh -s -- --version 0.2.0 --service
#   sh install.sh [--version V] [--dir D] [--service [--models NAMES]]
#
# Environment: INFERNET_INSTALL_DIR (default ~/.infernet/bin), INFERNET_DOWNLOAD_URL (a mirror, or a
# test server). The names below repeat src/release/layout.ts: change them there and here together.
#
# Installed layout (the symlink is swapped atomically, so a running `infernet` is never half-updated;
# this script leaves older versions where they are, and `infernet update` keeps only the one before
# the new one, for a rollback, plus any a running process was started from):
#   <dir>/infernet -> .versions/<version>/bin/infernet
#   <dir>/.versions/<version>/            the archive's top folder, as extracted
#
# The whole script is one function called on its last line, so a download cut short by the network
# (`curl | sh`) runs nothing at all rather than half a script.

set -eu

DEFAULT_DOWNLOAD_URL="https://infernet.tech/releases"
LATEST_FILE="latest"
SUMS_FILE="SHA256SUMS"
BINARY_PATH="bin/infernet"
VERSIONS_DIR=".versions"
LINK_NAME="infernet"
SERVICE_NAME="infernet-provider"
# Models a provider installed with --service serves unless --models says otherwise (the tiny demo
# models: small enough for any machine, and what `infernet demo` uses).
DEFAULT_SERVICE_MODELS="stories260k,mnist-8"
# Download retries and connect timeout (seconds), for flaky links; curl only (busybox wget has neither).
DOWNLOAD_RETRIES=3
CONNECT_TIMEOUT=20

# Removed on every exit (see the traps in main): the download folder and a half-extracted version.
tmp=""
stage=""

say() { printf '%s\n' "$*"; }
err() { printf 'install.sh: error: %s\n' "$*" >&2; }
die() {
  err "$@"
  exit 1
}

usage() {
  cat <<'EOF'
Installs Infernet (one executable) for this machine.

Usage: sh install.sh [--version V] [--dir D] [--service [--models NAMES]]
       curl -fsSL https://infernet.tech/install.sh | sh -s -- [options]

  --version V     install version V (default: the latest release)
  --dir D         install into D (default: $INFERNET_INSTALL_DIR or ~/.infernet/bin)
  --service       also write a systemd user unit that runs a provider (Linux)
  --models NAMES  models that provider serves, comma-separated (default: stories260k,mnist-8)
  -h, --help      show this help

Environment: INFERNET_DOWNLOAD_URL (a mirror of the release server), INFERNET_INSTALL_DIR.
EOF
}

cleanup() {
  if [ -n "$stage" ]; then rm -rf "$stage"; fi
  if [ -n "$tmp" ]; then rm -rf "$tmp"; fi
}

# Release names use process.platform / process.arch spellings (linux, darwin; x64, arm64).
detect_os() {
  os_name=$(uname -s)
  case "$os_name" in
    Linux) echo linux ;;
    Darwin) echo darwin ;;
    *) die "unsupported operating system: $os_name (Infernet releases are built for Linux and macOS)" ;;
  esac
}

detect_arch() {
  arch_name=$(uname -m)
  case "$arch_name" in
    x86_64 | amd64) arch=x64 ;;
    aarch64 | arm64) arch=arm64 ;;
    *) die "unsupported architecture: $arch_name (Infernet releases are built for x86_64/amd64 and aarch64/arm64)" ;;
  esac
  # A shell under Rosetta on Apple silicon reports x86_64; the native arm64 build is the right one.
  if [ "$1" = darwin ] && [ "$arch" = x64 ] && [ "$(sysctl -n sysctl.proc_translated 2>/dev/null || true)" = 1 ]; then
    arch=arm64
  fi
  echo "$arch"
}

# Picks the download tool once, so a machine with neither fails before anything else happens.
detect_downloader() {
  if command -v curl >/dev/null 2>&1; then
    echo curl
  elif command -v wget >/dev/null 2>&1; then
    echo wget
  else
    die "neither curl nor wget was found; install one of them (e.g. 'apt-get install curl') and run this again"
  fi
}

# download URL FILE [progress]: fails (non-zero) on any HTTP error, never leaving an error page as FILE.
download() {
  if [ "$downloader" = curl ]; then
    if [ "${3:-}" = progress ] && [ -t 2 ]; then
      curl -fL --progress-bar --retry "$DOWNLOAD_RETRIES" --connect-timeout "$CONNECT_TIMEOUT" -o "$2" "$1"
    else
      curl -fsSL --retry "$DOWNLOAD_RETRIES" --connect-timeout "$CONNECT_TIMEOUT" -o "$2" "$1"
    fi
  else
    wget -q -O "$2" "$1"
  fi
}

# Picks the sha256 tool once (coreutils on Linux, perl's shasum on macOS), before any download.
detect_hasher() {
  if command -v sha256sum >/dev/null 2>&1; then
    echo sha256sum
  elif command -v shasum >/dev/null 2>&1; then
    echo "shasum -a 256"
  else
    die "neither sha256sum nor shasum was found, so a download cannot be verified; install coreutils (or perl's shasum) and run this again"
  fi
}

# Prints a file's sha256 in lower-case hex.
sha256_of() {
  # $hasher is a command and its options ("shasum -a 256"): split on purpose.
  # shellcheck disable=SC2086
  sum=$($hasher "$1")
  printf '%s\n' "${sum%% *}" | tr 'A-F' 'a-f'
}

# A version ends up in a URL and a folder name: allow only what release versions are made of.
check_version() {
  case "$1" in
    '' | .* | *[!0-9A-Za-z._+-]*) die "$2: '$1' is not a version (expected something like 0.2.0)" ;;
  esac
}

# Runs BINARY --version; succeeds only when it prints exactly "infernet VERSION".
self_test() {
  if out=$("$1" --version 2>&1) && [ "$out" = "infernet $2" ]; then
    return 0
  fi
  err "self-test failed: '$1 --version' printed: ${out:-nothing} (expected 'infernet $2')"
  return 1
}

# Points <dir>/infernet at VERSION: a new link is made beside the old one and renamed over it, so
# there is never a moment without a working `infernet`.
switch_link() {
  new_link="$dir/.$LINK_NAME.new.$$"
  rm -f "$new_link"
  ln -s "$VERSIONS_DIR/$1/$BINARY_PATH" "$new_link"
  mv -f "$new_link" "$dir/$LINK_NAME"
}

# Downloads, verifies and unpacks VERSION into <dir>/.versions/VERSION (replacing a broken copy).
install_version() {
  release="infernet-$1-$os-$arch"
  archive="$release.tar.gz"
  base="$download_url/$1"
  say "downloading $archive from $base"
  download "$base/$SUMS_FILE" "$tmp/$SUMS_FILE" || die "could not download $base/$SUMS_FILE (is $1 a released version?)"
  # sha256sum writes "<hash>  <name>", or "<hash> *<name>" in binary mode.
  expected=$(awk -v n="$archive" '$2 == n || $2 == "*" n { print $1; exit }' "$tmp/$SUMS_FILE" | tr 'A-F' 'a-f')
  case "$expected" in
    '') die "$SUMS_FILE of version $1 lists no $archive: there is no release of $1 for $os-$arch" ;;
    *[!0-9a-f]*) die "$SUMS_FILE of version $1 has a malformed line for $archive" ;;
  esac
  [ "${#expected}" -eq 64 ] || die "$SUMS_FILE of version $1 has a malformed line for $archive"
  download "$base/$archive" "$tmp/$archive" progress || die "could not download $base/$archive"
  actual=$(sha256_of "$tmp/$archive")
  if [ "$actual" != "$expected" ]; then
    die "checksum mismatch for $archive: expected $expected, got $actual; the download is corrupt or was tampered with, so nothing was installed"
  fi
  say "verified sha256 $actual"

  # Unpack beside the final place (same filesystem, so the moves below are renames).
  mkdir -p "$dir/$VERSIONS_DIR"
  stage=$(mktemp -d "$dir/$VERSIONS_DIR/.install.XXXXXX")
  tar -xzf "$tmp/$archive" -C "$stage" || die "could not unpack $archive"
  [ -x "$stage/$release/$BINARY_PATH" ] || die "$archive has no executable $release/$BINARY_PATH"
  self_test "$stage/$release/$BINARY_PATH" "$1" ||
    die "the downloaded infernet $1 does not run on this machine; the previous install is unchanged"

  target="$dir/$VERSIONS_DIR/$1"
  if [ -e "$target" ]; then
    # A copy that failed its self-test: moved aside into the stage (removed on exit), then replaced.
    mv "$target" "$stage/replaced"
  fi
  mv "$stage/$release" "$target"
}

# Prints how to put DIR on PATH for the user's shell, unless it is there already.
path_hint() {
  case ":${PATH:-}:" in
    *":$1:"*) return 0 ;;
  esac
  say ""
  say "$1 is not on your PATH. To add it:"
  case "${SHELL##*/}" in
    bash) say "  echo 'export PATH=\"$1:\$PATH\"' >> ~/.bashrc && . ~/.bashrc" ;;
    zsh) say "  echo 'export PATH=\"$1:\$PATH\"' >> ~/.zshrc && . ~/.zshrc" ;;
    fish) say "  fish_add_path '$1'" ;;
    *)
      say "  bash: echo 'export PATH=\"$1:\$PATH\"' >> ~/.bashrc"
      say "  zsh:  echo 'export PATH=\"$1:\$PATH\"' >> ~/.zshrc"
      say "  fish: fish_add_path '$1'"
      ;;
  esac
}

# Writes the systemd user unit for a provider; enabling it is left to the user (it starts serving).
write_service() {
  unit_dir="${XDG_CONFIG_HOME:-$HOME/.config}/systemd/user"
  unit="$unit_dir/$SERVICE_NAME.service"
  mkdir -p "$unit_dir"
  # The path is quoted for systemd (spaces are fine); characters systemd would expand were refused earlier.
  cat >"$unit" <<EOF
# Written by Infernet's install.sh. Enable: systemctl --user enable --now $SERVICE_NAME
[Unit]
Description=Infernet provider (serves $models to the Infernet network)
Documentation=https://infernet.tech

[Service]
ExecStart="$dir/$LINK_NAME" start --provider --models $models
Restart=on-failure
RestartSec=10

[Install]
WantedBy=default.target
EOF
  say ""
  say "wrote $unit"
  say "start it now and at every login:"
  say "  systemctl --user daemon-reload && systemctl --user enable --now $SERVICE_NAME"
  say "keep it running while you are logged out:  loginctl enable-linger \"\$USER\""
  say "its log:  journalctl --user -u $SERVICE_NAME -f"
}

main() {
  version=""
  dir="${INFERNET_INSTALL_DIR:-}"
  service=""
  models="$DEFAULT_SERVICE_MODELS"
  while [ $# -gt 0 ]; do
    case "$1" in
      --version) [ $# -ge 2 ] || die "--version needs a value"; version="$2"; shift ;;
      --version=*) version="${1#*=}" ;;
      --dir) [ $# -ge 2 ] || die "--dir needs a value"; dir="$2"; shift ;;
      --dir=*) dir="${1#*=}" ;;
      --service) service=1 ;;
      --models) [ $# -ge 2 ] || die "--models needs a value"; models="$2"; shift ;;
      --models=*) models="${1#*=}" ;;
      -h | --help) usage; exit 0 ;;
      *) usage >&2; die "unknown option '$1'" ;;
    esac
    shift
  done

  if [ -z "$dir" ]; then
    [ -n "${HOME:-}" ] || die "HOME is not set; name an install directory with --dir or INFERNET_INSTALL_DIR"
    dir="$HOME/.infernet/bin"
  fi
  # Absolute, without a trailing slash: it goes into a PATH hint and the service's ExecStart.
  case "$dir" in /*) ;; *) dir="$(pwd)/$dir" ;; esac
  while [ "${dir%/}" != "$dir" ] && [ "$dir" != / ]; do dir="${dir%/}"; done
  case "$version" in v[0-9]*) version="${version#v}" ;; esac
  if [ -n "$version" ]; then check_version "$version" "--version"; fi

  os=$(detect_os)
  arch=$(detect_arch "$os")
  if [ -n "$service" ]; then
    [ "$os" = linux ] || die "--service writes a systemd user unit, which is Linux only"
    [ -n "${HOME:-}" ] || [ -n "${XDG_CONFIG_HOME:-}" ] || die "--service needs HOME (or XDG_CONFIG_HOME) set"
    case "$models" in '' | *[!A-Za-z0-9._,-]*) die "--models: '$models' is not a comma-separated list of model names" ;; esac
    case "$dir" in *[!A-Za-z0-9._/@+\ -]*) die "--service: the install directory '$dir' has characters a systemd unit cannot hold; use --dir with a plainer path" ;; esac
  fi
  downloader=$(detect_downloader)
  hasher=$(detect_hasher)
  command -v tar >/dev/null 2>&1 || die "tar was not found; install it and run this again"
  download_url="${INFERNET_DOWNLOAD_URL:-$DEFAULT_DOWNLOAD_URL}"
  download_url="${download_url%/}"

  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
  tmp=$(mktemp -d "${TMPDIR:-/tmp}/infernet-install.XXXXXX")

  if [ -z "$version" ]; then
    download "$download_url/$LATEST_FILE" "$tmp/$LATEST_FILE" || die "could not download $download_url/$LATEST_FILE"
    version=$(head -n 1 "$tmp/$LATEST_FILE" | tr -d ' \t\r')
    check_version "$version" "$download_url/$LATEST_FILE"
  fi
  say "installing infernet $version for $os-$arch into $dir"

  mkdir -p "$dir" || die "cannot create $dir"
  installed="$dir/$VERSIONS_DIR/$version/$BINARY_PATH"
  if [ -x "$installed" ] && self_test "$installed" "$version" 2>/dev/null; then
    say "infernet $version is already installed (self-test passed)"
  else
    if [ -e "$dir/$VERSIONS_DIR/$version" ]; then say "the installed copy of $version is damaged; reinstalling it"; fi
    install_version "$version"
  fi
  previous=$(readlink "$dir/$LINK_NAME" 2>/dev/null || true)
  switch_link "$version"
  if ! self_test "$dir/$LINK_NAME" "$version"; then
    # Put back what worked before, so a failed install never leaves a broken `infernet`.
    if [ -n "$previous" ]; then ln -s "$previous" "$dir/.$LINK_NAME.new.$$" && mv -f "$dir/.$LINK_NAME.new.$$" "$dir/$LINK_NAME"; fi
    die "$dir/$LINK_NAME does not run after the switch; the previous link was restored"
  fi
  say "infernet $version is ready: $dir/$LINK_NAME"

  path_hint "$dir"
  if [ -n "$service" ]; then write_service; fi
  say ""
  say "next: infernet doctor   (checks this machine and says how to fix what is missing)"
}

main "$@"
