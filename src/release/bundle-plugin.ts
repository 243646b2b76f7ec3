import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { BunPlugin } from "bun";

/**
 * Build-time only (scripts/build.ts): swaps the packages' own native loaders for loads from the release's
 * runtime folder (`src/release/runtime.ts`). Each package finds its addon by a path computed at run time
 * (napi-rs tries a list of package names, onnxruntime-node builds `../bin/napi-v6/<platform>/<arch>/`,
 * node-llama-cpp imports `@node-llama-cpp/<variant>` and reads its `bins/`), which `bun build --compile`
 * can neither follow nor embed; in the executable those paths would point into its virtual filesystem.
 * Run from source none of this applies and the packages load from node_modules as usual.
 */
export interface NativeRuntimePluginOptions {
  /** The QUIC addon's file name under runtime/quic/. */
  quicAddon: string;
  /** node-llama-cpp's version (its binaries packages must report the same, or it ignores them). */
  llamaVersion: string;
  /** `@node-llama-cpp/<name>` packages shipped under runtime/llama/<name>/; every other one is absent. */
  llamaVariants: readonly string[];
}

const RUNTIME_MODULE = join(import.meta.dir, "runtime.ts");
const LLAMA_NAMESPACE = "infernet-llama-bins";

/** The exports of @chainsafe/libp2p-quic's napi.js, in the order it lists them. */
const QUIC_EXPORTS = [
  "Client",
  "Connection",
  "ConnectionStats",
  "EndpointStats",
  "QuinnConfig",
  "Server",
  "Stream",
  "SocketFamily",
];

/** The addon load in onnxruntime-node 1.30's dist/binding.js. */
// biome-ignore lint/suspicious/noTemplateCurlyInString: the source text to find, not a template of ours.
const ONNX_REQUIRE = "require(`../bin/napi-v6/${process.platform}/${process.arch}/onnxruntime_binding.node`)";

/** node-llama-cpp 3.21's read of its binaries' release tag, in dist/bindings/utils/binariesGithubRelease.js. */
const LLAMA_RELEASE_READ = "await fs.readJson(binariesGithubReleasePath)";

/** Replaces the one expected occurrence of `from`; a package update that moved it fails the build. */
function replaceOnce(path: string, source: string, from: string, to: string): string {
  const at = source.indexOf(from);
  if (at < 0 || source.indexOf(from, at + 1) >= 0) {
    throw new Error(`${path} no longer contains \`${from}\` once; update src/release/bundle-plugin.ts`);
  }
  return source.slice(0, at) + to + source.slice(at + from.length);
}

export function nativeRuntimePlugin(options: NativeRuntimePluginOptions): BunPlugin {
  const runtime = JSON.stringify(RUNTIME_MODULE);
  return {
    name: "infernet-native-runtime",
    setup(build) {
      // Ink connects to React DevTools only when DEV=true and the optional react-devtools-core is
      // installed; a binary ships neither, and a bare import of the absent package would stop the
      // binary at start (seen), so its devtools module is empty here.
      build.onLoad({ filter: /[\\/]ink[\\/]build[\\/]devtools\.js$/ }, () => ({
        contents: "export {};",
        loader: "js",
      }));
      build.onLoad({ filter: /[\\/]@chainsafe[\\/]libp2p-quic[\\/]dist[\\/]src[\\/]napi\.js$/ }, () => ({
        loader: "js",
        contents: [
          `import { loadNativeAddon } from ${runtime};`,
          `const binding = loadNativeAddon("quic", ${JSON.stringify(options.quicAddon)});`,
          `export const { ${QUIC_EXPORTS.join(", ")} } = binding;`,
        ].join("\n"),
      }));

      build.onLoad({ filter: /[\\/]onnxruntime-node[\\/]dist[\\/]binding\.js$/ }, (args) => {
        const source = readFileSync(args.path, "utf8");
        const load = `require(${runtime}).loadNativeAddon("onnx", "onnxruntime_binding.node")`;
        return { loader: "js", contents: replaceOnce(args.path, source, ONNX_REQUIRE, load) };
      });

      // node-llama-cpp reads its version from its package.json beside its code: not there in the executable.
      build.onLoad({ filter: /[\\/]node-llama-cpp[\\/]dist[\\/]utils[\\/]getModuleVersion\.js$/ }, () => ({
        loader: "js",
        contents: `export async function getModuleVersion() { return ${JSON.stringify(options.llamaVersion)}; }`,
      }));

      // Its prebuilt binaries' release tag lives in llama/binariesGithubRelease.json: read it at build time.
      build.onLoad(
        { filter: /[\\/]node-llama-cpp[\\/]dist[\\/]bindings[\\/]utils[\\/]binariesGithubRelease\.js$/ },
        (args) => {
          const source = readFileSync(args.path, "utf8");
          const json = readFileSync(join(args.path, "../../../../llama/binariesGithubRelease.json"), "utf8");
          return { loader: "js", contents: replaceOnce(args.path, source, LLAMA_RELEASE_READ, `(${json.trim()})`) };
        },
      );

      // Before loading a prebuilt binary, node-llama-cpp forks its own testBindingBinary.js file to see whether
      // the binary crashes; the executable has no such file (node-llama-cpp itself then warns on stderr and
      // assumes it passes). The manifest check stands in for "is this the binary we shipped"; a binary that
      // cannot load here (no CUDA driver) still fails its dlopen with an error and "auto" falls back.
      build.onLoad(
        { filter: /[\\/]node-llama-cpp[\\/]dist[\\/]bindings[\\/]utils[\\/]testBindingBinary\.js$/ },
        () => ({
          loader: "js",
          contents: "export async function testBindingBinary() { return true; }",
        }),
      );

      build.onResolve({ filter: /^@node-llama-cpp\/[a-z0-9-]+$/ }, (args) => ({
        path: args.path.slice("@node-llama-cpp/".length),
        namespace: LLAMA_NAMESPACE,
      }));
      build.onLoad({ filter: /.*/, namespace: LLAMA_NAMESPACE }, (args) => {
        // A variant not shipped reports no folder; node-llama-cpp then treats it as not installed.
        if (!options.llamaVariants.includes(args.path)) {
          return { loader: "js", contents: "export function getBinsDir() { return {}; }" };
        }
        return {
          loader: "js",
          contents: [
            `import { llamaBinsDir } from ${runtime};`,
            "export function getBinsDir() {",
            `  return { binsDir: llamaBinsDir(${JSON.stringify(args.path)}), packageVersion: ${JSON.stringify(options.llamaVersion)} };`,
            "}",
          ].join("\n"),
        };
      });
    },
  };
}
