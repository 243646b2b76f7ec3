/**
 * Where a release's pieces are, shared by the build (scripts/build.ts, scripts/release.ts), the
 * installer (install.sh, which repeats these names in shell), `infernet update` and the compiled
 * binary's own lookup of its native runtime. Change a name here and in install.sh together.
 *
 * Download server (`INFERNET_DOWNLOAD_URL`, default `DEFAULT_DOWNLOAD_URL`):
 *   <base>/latest                              the newest version, one line ("0.2.0")
 *   <base>/<version>/SHA256SUMS                 "<sha256>  <archive name>" lines
 *   <base>/<version>/infernet-<version>-<os>-<arch>.tar.gz
 * Archive: one top folder `infernet-<version>-<os>-<arch>/` holding
 *   bin/infernet                               the `bun build --compile` executable
 *   runtime/...                                native libraries loaded from beside the binary
 *   runtime/manifest.json                      { version, files: { "<path under runtime/>": "<sha256>" } }
 * Installed (`INFERNET_INSTALL_DIR`, default ~/.infernet/bin):
 *   <dir>/infernet -> .versions/<version>/bin/infernet     (a symlink; swapped atomically on update)
 *   <dir>/.versions/<version>/                  the archive's top folder, as extracted
 */

/** Where releases are downloaded from unless `INFERNET_DOWNLOAD_URL` says otherwise. */
export const DEFAULT_DOWNLOAD_URL = "https://infernet.tech/releases";
/** Operating systems and architectures releases are built for (as `process.platform` / `process.arch` name them). */
export const RELEASE_OSES = ["linux", "darwin"] as const;
export const RELEASE_ARCHES = ["x64", "arm64"] as const;
export type ReleaseOs = (typeof RELEASE_OSES)[number];
export type ReleaseArch = (typeof RELEASE_ARCHES)[number];

export const SUMS_FILE = "SHA256SUMS";
export const LATEST_FILE = "latest";
/** Inside the archive's top folder. */
export const BINARY_PATH = "bin/infernet";
export const RUNTIME_DIR = "runtime";
export const RUNTIME_MANIFEST = "runtime/manifest.json";
/** Inside the install directory. */
export const VERSIONS_DIR = ".versions";
export const LINK_NAME = "infernet";

export function releaseName(version: string, os: ReleaseOs, arch: ReleaseArch): string {
  return `infernet-${version}-${os}-${arch}`;
}

export function archiveName(version: string, os: ReleaseOs, arch: ReleaseArch): string {
  return `${releaseName(version, os, arch)}.tar.gz`;
}

/** The runtime manifest: every file under `runtime/` with its sha256, checked before it is loaded. */
export interface RuntimeManifest {
  version: string;
  files: Record<string, string>;
}
