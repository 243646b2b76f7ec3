#!/usr/bin/env bun
/**
 * Builds the release folder `dist/infernet-<version>-<os>-<arch>/` (layout: src/release/layout.ts):
 *   bin/infernet            `bun build --compile` of src/index.ts, version baked in from package.json
 *   runtime/quic/           the QUIC transport's napi addon
 *   runtime/onnx/           onnxruntime-node's addon and libonnxruntime
 *   runtime/llama/<pkg>/    node-llama-cpp's prebuilt binaries, one folder per @node-llama-cpp/<pkg> shipped
 *   runtime/manifest.json   every runtime file's sha256, checked by the binary before it loads one
 *
 * Usage: bun scripts/build.ts [--target linux-x64] [--llama cpu|all|<pkg>,<pkg>] [--out dist]
 *   --llama all (the default) ships every llama.cpp variant installed for the target (CPU, Vulkan, CUDA);
 *   --llama cpu ships the CPU binaries only (smaller; what the binary test uses, since CI has no GPU).
 */
import { cpSync, existsSync, mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import llamaPkg from "../node_modules/node-llama-cpp/package.json" with { type: "json" };
import { nativeRuntimePlugin } from "../src/release/bundle-plugin.ts";
import {
  BINARY_PATH,
  RUNTIME_DIR,
  RUNTIME_MANIFEST,
  type RuntimeManifest,
  releaseName,
} from "../src/release/layout.ts";
import { listFiles, sha256File } from "../src/release/runtime.ts";
import { describeTarget, parseTarget, type Target } from "../src/release/targets.ts";
import { VERSION } from "../src/version.ts";

const ROOT = resolve(import.meta.dir, "..");
const MODULES = join(ROOT, "node_modules");

export interface BuildResult {
  /** The release folder (holds bin/ and runtime/). */
  dir: string;
  binary: string;
  target: Target;
  llamaVariants: string[];
}

export interface BuildOptions {
  target?: string;
  /** "all", "cpu" or a list of @node-llama-cpp package names (without the scope). */
  llama?: string;
  out?: string;
}

/** Thrown when a target cannot be built here, saying which piece is missing. */
export class BuildError extends Error {
  override name = "BuildError";
}

export async function build(options: BuildOptions = {}): Promise<BuildResult> {
  const target = parseTarget(options.target ?? `${process.platform}-${process.arch}`);
  const pieces = nativePieces(target, options.llama ?? "all");
  const out = resolve(ROOT, options.out ?? "dist");
  const dir = join(out, releaseName(VERSION, target.os, target.arch));
  rmSync(dir, { recursive: true, force: true });
  const binary = join(dir, BINARY_PATH);

  const result = await Bun.build({
    entrypoints: [join(ROOT, "src/index.ts")],
    compile: {
      target: target.bunTarget,
      outfile: binary,
      // The binary's behaviour must not depend on files in the user's working directory.
      autoloadDotenv: false,
      autoloadBunfig: false,
    },
    // Libraries' production builds (React's dashboard frames cost ~30% less than its development build's).
    define: { "process.env.NODE_ENV": JSON.stringify("production") },
    // Identifiers stay: typed errors are told apart by their class name (InfernetError's `name`).
    minify: { whitespace: true, syntax: true, identifiers: false },
    sourcemap: "none",
    plugins: [
      nativeRuntimePlugin({
        quicAddon: pieces.quicAddon,
        llamaVersion: llamaPkg.version,
        llamaVariants: pieces.llama,
      }),
    ],
  }).catch((err: unknown) => {
    throw new BuildError(`bun build --compile failed for ${target.name}: ${describe(err)}`);
  });
  if (!result.success) {
    throw new BuildError(`bun build --compile failed for ${target.name}:\n${result.logs.map(String).join("\n")}`);
  }

  const runtime = join(dir, RUNTIME_DIR);
  mkdirSync(runtime, { recursive: true });
  cpSync(pieces.quicDir, join(runtime, "quic"), { recursive: true, dereference: true, filter: onlyAddon });
  cpSync(pieces.onnxDir, join(runtime, "onnx"), { recursive: true, dereference: true });
  for (const pkg of pieces.llama) {
    cpSync(join(MODULES, "@node-llama-cpp", pkg, "bins"), join(runtime, "llama", pkg), {
      recursive: true,
      dereference: true,
    });
  }
  const manifest: RuntimeManifest = { version: VERSION, files: {} };
  for (const path of listFiles(runtime)) manifest.files[path] = sha256File(join(runtime, path));
  writeFileSync(join(dir, RUNTIME_MANIFEST), `${JSON.stringify(manifest, null, 2)}\n`);
  return { dir, binary, target, llamaVariants: pieces.llama };

  function onlyAddon(src: string): boolean {
    return src === pieces.quicDir || src.endsWith(pieces.quicAddon);
  }
}

interface NativePieces {
  quicDir: string;
  quicAddon: string;
  onnxDir: string;
  llama: string[];
}

/** Finds the target's native files in node_modules, or says which one is missing. */
function nativePieces(target: Target, llama: string): NativePieces {
  const missing = (what: string, path: string) =>
    new BuildError(
      `cannot build ${target.name}: ${what} is not installed (${path}); ` +
        "install it on a machine of that platform (npm installs only the host's native packages)",
    );
  const quicDir = join(MODULES, "@chainsafe", `libp2p-quic-${target.quicSuffix}`);
  const quicAddon = `libp2p-quic.${target.quicSuffix}.node`;
  if (!existsSync(join(quicDir, quicAddon))) throw missing("the QUIC transport's addon", join(quicDir, quicAddon));
  const onnxDir = join(MODULES, "onnxruntime-node/bin/napi-v6", target.os, target.arch);
  if (!existsSync(join(onnxDir, "onnxruntime_binding.node"))) throw missing("onnxruntime's addon", onnxDir);

  const installed = target.llamaPackages.filter((pkg) => existsSync(join(MODULES, "@node-llama-cpp", pkg, "bins")));
  const cpu = target.llamaPackages[0]!;
  if (!installed.includes(cpu)) throw missing("llama.cpp's CPU binaries", join(MODULES, "@node-llama-cpp", cpu));
  let chosen: string[];
  if (llama === "all") chosen = installed;
  else if (llama === "cpu") chosen = [cpu];
  else {
    chosen = llama.split(",").map((s) => s.trim());
    const absent = chosen.find((pkg) => !installed.includes(pkg));
    if (absent) {
      throw new BuildError(
        `--llama ${absent}: not a llama.cpp package installed for ${target.name} (installed: ${installed.join(", ")})`,
      );
    }
    if (!chosen.includes(cpu)) chosen.unshift(cpu);
  }
  return { quicDir, quicAddon, onnxDir, llama: chosen };
}

function describe(err: unknown): string {
  if (err instanceof AggregateError) return err.errors.map(describe).join("; ");
  return err instanceof Error ? err.message : String(err);
}

if (import.meta.main) {
  const { values } = parseArgs({
    options: { target: { type: "string" }, llama: { type: "string" }, out: { type: "string" } },
  });
  try {
    const started = performance.now();
    const built = await build(values);
    const seconds = ((performance.now() - started) / 1000).toFixed(1);
    process.stdout.write(
      `built ${describeTarget(built.target)} in ${seconds} s: ${built.dir}\n` +
        `  llama.cpp variants: ${built.llamaVariants.join(", ")}\n`,
    );
  } catch (err) {
    process.stderr.write(`${describe(err)}\n`);
    process.exit(1);
  }
}
