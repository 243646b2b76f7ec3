import pkg from "../package.json" with { type: "json" };

/** The version baked into every build (scripts/build replaces nothing: it is read from package.json). */
export const VERSION: string = pkg.version;
