import { RELEASE_ARCHES, RELEASE_OSES, type ReleaseArch, type ReleaseOs } from "./layout.ts";

/**
 * What building for one platform needs (scripts/build.ts): Bun's compile target and the names of the
 * native packages that carry that platform's binaries. npm installs only the host's optional native
 * packages, so a cross target builds only where its packages were installed by hand.
 */
export interface Target {
  name: `${ReleaseOs}-${ReleaseArch}`;
  os: ReleaseOs;
  arch: ReleaseArch;
  bunTarget: Bun.Build.CompileTarget;
  /** @chainsafe/libp2p-quic-<suffix> and its `libp2p-quic.<suffix>.node`. */
  quicSuffix: string;
  /** @node-llama-cpp/<package> names, the CPU (or Metal, on macOS) one first, then GPU variants. */
  llamaPackages: string[];
}

const TARGETS: Target[] = [
  {
    name: "linux-x64",
    os: "linux",
    arch: "x64",
    bunTarget: "bun-linux-x64",
    quicSuffix: "linux-x64-gnu",
    llamaPackages: ["linux-x64", "linux-x64-vulkan", "linux-x64-cuda", "linux-x64-cuda-ext"],
  },
  {
    name: "linux-arm64",
    os: "linux",
    arch: "arm64",
    bunTarget: "bun-linux-arm64",
    quicSuffix: "linux-arm64-gnu",
    llamaPackages: ["linux-arm64"],
  },
  {
    name: "darwin-arm64",
    os: "darwin",
    arch: "arm64",
    bunTarget: "bun-darwin-arm64",
    quicSuffix: "darwin-arm64",
    llamaPackages: ["mac-arm64-metal"],
  },
];

export function parseTarget(name: string): Target {
  const target = TARGETS.find((t) => t.name === name);
  if (!target) {
    const known = RELEASE_OSES.flatMap((os) => RELEASE_ARCHES.map((arch) => `${os}-${arch}`));
    const buildable = TARGETS.map((t) => t.name).join(", ");
    throw new Error(
      known.includes(name)
        ? `target ${name} is not supported yet (supported: ${buildable})`
        : `unknown target "${name}" (supported: ${buildable})`,
    );
  }
  return target;
}

export function describeTarget(target: Target): string {
  return `${target.name} (${target.bunTarget})`;
}
