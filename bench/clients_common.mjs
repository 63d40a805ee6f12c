// What the benchmarks' Node client swarms share (bench/fanout_clients.mjs,
// bench/filtered_clients.mjs): the clock, the JSON-lines output, and where the writer's
// timestamp sits in a delivered message.
import { performance } from "node:perf_hooks";

/** Wall-clock seconds, as the Python writer's time.time() (same machine, same clock). */
export const nowSeconds = () => (performance.timeOrigin + performance.now()) / 1000;

/** One JSON line on stdout: the control channel back to the Python benchmark. */
export const out = (obj) => process.stdout.write(`${JSON.stringify(obj)}\n`);

/**
 * The writer's timestamp inside a delivered message: a baseline's frame carries it as `t`;
 * a livesync `tx` frame as data.t of a whole document, or in a patch replacing /data or
 * /data/t. Undefined when the message carries none.
 */
export function timestampOf(msg) {
  if (typeof msg.t === "number") return msg.t;
  if (msg.type !== "tx") return undefined;
  for (const part of msg.parts) {
    for (const change of part.ch) {
      if (change.d?.data?.t !== undefined) return change.d.data.t;
      for (const op of change.p ?? []) {
        if (op.path === "/data/t") return op.value;
        if (op.path === "/data" && op.value?.t !== undefined) return op.value.t;
      }
    }
  }
  return undefined;
}
