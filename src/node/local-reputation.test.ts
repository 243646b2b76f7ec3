import { expect, test } from "bun:test";
import { join } from "node:path";
import { tempDir } from "../../test/helpers/paths.ts";
import { ReputationStore } from "../reputation/store.ts";
import { Store } from "../store/db.ts";
import { localReputation } from "./local-reputation.ts";

const SHA = "ab".repeat(32);
const OTHER = "cd".repeat(32);

test("localReputation: known once something was observed, the store's score, banned while the ban lasts", () => {
  using dir = tempDir();
  let now = 1_000_000;
  const store = Store.openFile(join(dir.path, "state.db"));
  const rep = new ReputationStore(store, () => now);
  const lookup = localReputation(rep, () => now);
  expect(lookup("stranger", SHA)).toEqual({ score: 1, banned: false, known: false });
  rep.announced("stranger", SHA, 100);
  expect(lookup("stranger", SHA).known).toBe(false);
  rep.probed("seen", SHA, false);
  expect(lookup("seen", SHA)).toEqual({ score: 0.5, banned: false, known: true });
  expect(lookup("seen", OTHER).known).toBe(false);
  rep.verified("p", SHA, { latencyMs: 10, units: 1 });
  rep.ban("p", "wrong", undefined, "me");
  expect(lookup("p", SHA)).toEqual({ score: 0, banned: true, known: true });
  // A ban covers every model, known or not.
  expect(lookup("p", OTHER)).toMatchObject({ banned: true, known: false });
  now += 365 * 86_400_000;
  expect(lookup("p", SHA)).toEqual({ score: 1, banned: false, known: true });
  store.close();
});
