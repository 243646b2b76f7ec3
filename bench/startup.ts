/**
 * Process start to `--version` output for `infernet` from source, with `bun -e` as the floor.
 * Usage: bun bench/startup.ts [rounds=10]
 */
import { BUN, CLI, machine, median, spawnTimed } from "./lib.ts";

const rounds = Number(process.argv[2] ?? 10);
const infernet: number[] = [];
const floor: number[] = [];
for (let i = 0; i < rounds; i++) {
  infernet.push((await spawnTimed([BUN, CLI, "--version"])).wallMs);
  floor.push((await spawnTimed([BUN, "-e", "console.log('x')"])).wallMs);
}
console.log(`machine: ${machine()}`);
console.log(`infernet --version (from source): ${median(infernet).toFixed(1)} ms median of ${rounds}`);
console.log(`bun -e (empty program floor):      ${median(floor).toFixed(1)} ms median of ${rounds}`);
