import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fp32CoresPerSm, knownSmCount } from "./gpu-specs.ts";
import { addComputeUnits } from "./nvidia.ts";
import { parseQueryCsv, parseSmiXml } from "./nvidia-smi.ts";

const H100 = join(import.meta.dir, "../../../../shared/data/gpu/h100");
const read = (file: string) => readFileSync(join(H100, file), "utf8");
const MiB = 1024 * 1024;

describe("parseQueryCsv on the real H100 captures", () => {
  test("header + units form: every field", () => {
    const [gpu, ...rest] = parseQueryCsv(read("nvidia-smi-query.csv"));
    expect(rest).toHaveLength(0);
    expect(gpu).toEqual({
      index: 0,
      name: "NVIDIA H100 80GB HBM3",
      uuid: "GPU-faad593f-33da-6e04-611f-40d789fbba57",
      memoryTotalBytes: 81559 * MiB,
      memoryUsedBytes: 0,
      memoryFreeBytes: 81079 * MiB,
      utilizationPercent: 0,
      temperatureC: 33,
      powerDrawW: 115.21,
      powerLimitW: 700,
      smClockMhz: 555,
      smClockMaxMhz: 1980,
      computeCapability: "9.0",
      driverVersion: "580.159.04",
      pcieGen: 5,
      pcieWidth: 16,
    });
  });

  test("noheader, nounits form with the field list it was captured with", () => {
    const gpus = parseQueryCsv(read("nvidia-smi-query-noheader.csv"), [
      "index",
      "name",
      "memory.total",
      "memory.free",
      "compute_cap",
    ]);
    expect(gpus).toEqual([
      {
        index: 0,
        name: "NVIDIA H100 80GB HBM3",
        memoryTotalBytes: 81559 * MiB,
        memoryFreeBytes: 81079 * MiB,
        computeCapability: "9.0",
      },
    ]);
  });

  test("SM count from the published table and CUDA cores from compute capability", () => {
    const [gpu] = addComputeUnits(parseQueryCsv(read("nvidia-smi-query.csv")), false);
    expect(gpu?.smCount).toBe(132);
    expect(gpu?.smCountSource).toBe("known-table");
    expect(gpu?.cudaCores).toBe(16_896);
  });

  test("the SM count agrees with what PyTorch read from the driver on the same machine", () => {
    // torch-props.txt: name, multiprocessor count, total bytes, cc major, cc minor
    const fields = read("torch-props.txt").trim().split(" ");
    const [major, minor] = fields.slice(-2);
    const totalBytes = Number(fields.at(-3));
    const sms = Number(fields.at(-4));
    const name = fields.slice(0, -4).join(" ");
    expect(knownSmCount(name, totalBytes)).toBe(sms);
    expect(fp32CoresPerSm(`${major}.${minor}`)).toBe(128);
  });

  test("blank output is no GPUs", () => {
    expect(parseQueryCsv("")).toEqual([]);
    expect(parseQueryCsv("\n  \n")).toEqual([]);
  });

  test("N/A and [Not Supported] fields are left out, not zero", () => {
    const csv =
      "index, name, memory.total [MiB], power.draw [W], temperature.gpu\n0, Tesla T4, 15360 MiB, [N/A], [Not Supported]\n";
    const [gpu] = parseQueryCsv(csv);
    expect(gpu).toEqual({ index: 0, name: "Tesla T4", memoryTotalBytes: 15360 * MiB });
  });

  test("several GPUs keep their order and indexes", () => {
    const csv = "0, NVIDIA A10, 23028\n1, NVIDIA L4, 23034\n";
    const gpus = parseQueryCsv(csv, ["index", "name", "memory.total"]);
    expect(gpus.map((g) => [g.index, g.name])).toEqual([
      [0, "NVIDIA A10"],
      [1, "NVIDIA L4"],
    ]);
    expect(addComputeUnits(gpus, false).map((g) => g.smCount)).toEqual([72, 58]);
  });

  test("malformed output is an InvalidInputError naming the problem", () => {
    const cases: [string, RegExp][] = [
      ["No devices were found", /has 1 fields, expected 17/],
      ["0, NVIDIA H100 80GB HBM3, 81559", /expected 17/],
      [read("nvidia-smi.txt"), /fields, expected 17/],
    ];
    for (const [text, message] of cases) {
      expect(() => parseQueryCsv(text)).toThrow(message);
      try {
        parseQueryCsv(text);
      } catch (err) {
        expect((err as Error).name).toBe("InvalidInputError");
      }
    }
    expect(() => parseQueryCsv("0, NVIDIA A10, lots", ["index", "name", "memory.total"])).toThrow(
      /memory.total is "lots", not a number/,
    );
    expect(() => parseQueryCsv("0, NVIDIA A10, nine", ["index", "name", "compute_cap"])).toThrow(/compute_cap/);
    expect(() => parseQueryCsv("x, NVIDIA A10", ["index", "name"])).toThrow(/index/);
    expect(() => parseQueryCsv("0, ", ["index", "name"])).toThrow(/no GPU name/);
  });
});

describe("parseSmiXml on the real H100 capture", () => {
  test("versions, architecture and per-GPU facts", () => {
    const report = parseSmiXml(read("nvidia-smi-q.xml"));
    expect(report.driverVersion).toBe("580.159.04");
    expect(report.cudaVersion).toBe("13.0");
    expect(report.gpus).toEqual([
      {
        index: 0,
        name: "NVIDIA H100 80GB HBM3",
        uuid: "GPU-faad593f-33da-6e04-611f-40d789fbba57",
        pciBusId: "00000000:00:06.0",
        memoryTotalBytes: 81559 * MiB,
        memoryUsedBytes: 0,
        memoryFreeBytes: 81079 * MiB,
        utilizationPercent: 0,
        temperatureC: 33,
        powerDrawW: 109.24,
        powerLimitW: 700,
        smClockMhz: 510,
        smClockMaxMhz: 1980,
        driverVersion: "580.159.04",
        pcieGen: 5,
        pcieWidth: 16,
        architecture: "Hopper",
      },
    ]);
  });

  test("text that is not an nvidia-smi report is an InvalidInputError", () => {
    expect(() => parseSmiXml(read("nvidia-smi.txt"))).toThrow(/nvidia_smi_log/);
    expect(() =>
      parseSmiXml('<nvidia_smi_log><gpu id="1"><product_name>N/A</product_name></gpu></nvidia_smi_log>'),
    ).toThrow(/no GPU name/);
  });

  test("a report with no GPU lists none", () => {
    expect(parseSmiXml("<nvidia_smi_log><attached_gpus>0</attached_gpus></nvidia_smi_log>").gpus).toEqual([]);
  });
});

describe("published GPU facts", () => {
  test("CUDA cores per SM by compute capability", () => {
    expect(fp32CoresPerSm("7.0")).toBe(64);
    expect(fp32CoresPerSm("7.5")).toBe(64);
    expect(fp32CoresPerSm("8.0")).toBe(64);
    expect(fp32CoresPerSm("8.6")).toBe(128);
    expect(fp32CoresPerSm("8.9")).toBe(128);
    expect(fp32CoresPerSm("9.0")).toBe(128);
    expect(fp32CoresPerSm("10.0")).toBe(128);
    expect(fp32CoresPerSm("12.0")).toBe(128);
    expect(fp32CoresPerSm("99.9")).toBeUndefined();
    expect(fp32CoresPerSm("nine")).toBeUndefined();
    expect(fp32CoresPerSm(undefined)).toBeUndefined();
  });

  test("SM counts by exact product name; variants sharing a name are told apart by memory", () => {
    expect(knownSmCount("NVIDIA H100 80GB HBM3")).toBe(132);
    expect(knownSmCount("NVIDIA H100 PCIe")).toBe(114);
    expect(knownSmCount("NVIDIA A100-SXM4-80GB")).toBe(108);
    expect(knownSmCount("Tesla T4")).toBe(40);
    expect(knownSmCount("NVIDIA GeForce RTX 4090")).toBe(128);
    expect(knownSmCount("NVIDIA GeForce RTX 3080")).toBeUndefined();
    expect(knownSmCount("NVIDIA GeForce RTX 3080", 10240 * MiB)).toBe(68);
    expect(knownSmCount("NVIDIA GeForce RTX 3080", 12288 * MiB)).toBe(70);
    expect(knownSmCount("NVIDIA H100")).toBeUndefined();
    expect(knownSmCount("Some Future GPU")).toBeUndefined();
  });

  test("an unknown GPU gets no SM or CUDA core count rather than a guess", () => {
    const [gpu] = addComputeUnits([{ index: 0, name: "Some Future GPU", computeCapability: "13.0" }], false);
    expect(gpu?.smCountSource).toBe("unknown");
    expect(gpu?.smCount).toBeUndefined();
    expect(gpu?.cudaCores).toBeUndefined();
  });
});
