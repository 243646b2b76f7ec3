import { readdirSync, readFileSync } from "node:fs";

/**
 * CPU time and resident memory of other processes, read from Linux's /proc (bench/dashboard.ts).
 * CPU is utime + stime of every thread of the process (fields 14 and 15 of /proc/PID/stat), so it
 * counts what the process itself burned, whatever else shares the cores.
 */

/** Clock ticks per second for /proc/PID/stat times: `getconf CLK_TCK`, 100 on every Linux we know. */
export const CLK_TCK = (() => {
  const out = Bun.spawnSync(["getconf", "CLK_TCK"], { stderr: "ignore" }).stdout.toString().trim();
  const n = Number(out);
  return Number.isInteger(n) && n > 0 ? n : 100;
})();

/** utime + stime of `pid`, in seconds. */
export function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // The command name (field 2) is in parentheses and may hold spaces: count fields after its ')'.
  const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
  // After the name, field 3 (state) is index 0, so utime (14) is index 11 and stime (15) index 12.
  return (Number(fields[11]) + Number(fields[12])) / CLK_TCK;
}

/** Resident set size of `pid` in bytes (VmRSS in /proc/PID/status). */
export function rssBytes(pid: number): number {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = /^VmRSS:\s+(\d+) kB$/m.exec(status)?.[1];
  if (kib === undefined) throw new Error(`no VmRSS for process ${pid}`);
  return Number(kib) * 1024;
}

/** The process ids whose parent is `ppid` (a scan of /proc: no dependence on CONFIG_PROC_CHILDREN). */
export function childrenOf(ppid: number): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const stat = readFileSync(`/proc/${entry}/stat`, "utf8");
      // Field 4 (ppid) is the second field after the name's closing parenthesis.
      if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === ppid) found.push(Number(entry));
    } catch {
      // The process ended while the directory was read.
    }
  }
  return found;
}

/** The executable name (`comm`) of `pid`, or undefined once it is gone. */
export function commOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, "utf8").trim();
  } catch {
    return undefined;
  }
}

/** CPU use of some processes over a window, as a percentage of one core. */
export class CpuWindow {
  private readonly start = performance.now();
  private readonly before: Map<number, number>;

  constructor(private readonly pids: number[]) {
    this.before = new Map(pids.map((pid) => [pid, cpuSeconds(pid)]));
  }

  /** Percent of one core each process used since the window opened, and the window's length. */
  read(): { seconds: number; percent: Map<number, number> } {
    const seconds = (performance.now() - this.start) / 1000;
    const percent = new Map<number, number>();
    for (const pid of this.pids) percent.set(pid, ((cpuSeconds(pid) - (this.before.get(pid) ?? 0)) * 100) / seconds);
    return { seconds, percent };
  }
}

/** Least-squares slope of y over x (units of y per unit of x); 0 with fewer than two points. */
export function slope(points: { x: number; y: number }[]): number {
  if (points.length < 2) return 0;
  const mx = points.reduce((s, p) => s + p.x, 0) / points.length;
  const my = points.reduce((s, p) => s + p.y, 0) / points.length;
  const sxx = points.reduce((s, p) => s + (p.x - mx) ** 2, 0);
  const sxy = points.reduce((s, p) => s + (p.x - mx) * (p.y - my), 0);
  return sxx === 0 ? 0 : sxy / sxx;
}
