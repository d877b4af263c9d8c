// A hand-written SVG bar chart: one panel per input, one row per case, one
// bar per read size, on a log scale of MB/s.
import type { BenchResults } from "./_report.ts";

const COLORS: Record<number, string> = { 65536: "#1f77b4", 4093: "#ff7f0e", 7: "#2ca02c" };
const LABELS: Record<number, string> = {
  65536: "64 KiB reads",
  4093: "4093 B reads",
  7: "7 B reads",
};

const esc = (s: string) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

export function chart(r: BenchResults): string {
  const inputs = [...new Set(r.groups.map((g) => g.input))];
  const reads = [...new Set(r.groups.map((g) => g.read))];
  const order = ["R0", "R0a", "R1", "R2", "N", "D", "S", "F", "Fg", "C"];
  const rank = (id: string) => (order.indexOf(id) + 1) || order.length + 1;
  /** The cases measured on `input`, in a fixed order. */
  const idsOf = (input: string) =>
    [...new Set(r.groups.filter((g) => g.input === input).flatMap((g) => Object.keys(g.results)))]
      .sort((a, b) => rank(a) - rank(b));
  const values = r.groups.flatMap((g) => Object.values(g.results).map((c) => c.mbps)).filter((v) =>
    v > 0
  );
  const lo = Math.pow(10, Math.floor(Math.log10(Math.min(...values, 1))));
  const hi = Math.pow(10, Math.ceil(Math.log10(Math.max(...values, 10))));
  const left = 70, right = 30, width = 900, plot = width - left - right;
  const bar = 7, rowGap = 6, panelHead = 28;
  const rowHeight = reads.length * bar + rowGap;
  const panelHeight = (input: string) => panelHead + idsOf(input).length * rowHeight + 10;
  const top = 70;
  const height = top + inputs.reduce((h, input) => h + panelHeight(input), 0) + 40;
  const x = (v: number) =>
    left + plot * (Math.log10(v) - Math.log10(lo)) / (Math.log10(hi) - Math.log10(lo));
  const out: string[] = [];
  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${left}" y="20" font-size="14" font-weight="bold">vdagent-streams throughput (MB/s of wire input, log scale, median of ${r.runs})</text>`,
    `<text x="${left}" y="38">${
      esc(`${
        Object.entries(r.versions).map(([k, v]) => `${k} ${v}`).join(", ")
      }; ${r.machine.cpu}, ${r.machine.cores} cores; ${r.date.slice(0, 10)}${
        r.quick ? " (quick run)" : ""
      }`)
    }</text>`,
  );
  reads.forEach((read, i) => {
    const lx = left + i * 130;
    out.push(
      `<rect x="${lx}" y="48" width="10" height="10" fill="${COLORS[read] ?? "#999"}"/>`,
      `<text x="${lx + 14}" y="57">${LABELS[read] ?? `${read} B reads`}</text>`,
    );
  });
  let y0 = top;
  inputs.forEach((input, p) => {
    const ids = idsOf(input);
    const desc = r.groups.find((g) => g.input === input)?.description ?? "";
    out.push(
      `<text x="${left}" y="${y0 + 16}" font-weight="bold">${esc(`${input}: ${desc}`)}</text>`,
    );
    for (let v = lo; v <= hi; v *= 10) {
      out.push(
        `<line x1="${x(v)}" y1="${y0 + panelHead - 4}" x2="${x(v)}" y2="${
          y0 + panelHead + ids.length * rowHeight
        }" stroke="#ddd"/>`,
      );
      if (p === inputs.length - 1) {
        out.push(
          `<text x="${x(v)}" y="${
            y0 + panelHead + ids.length * rowHeight + 14
          }" text-anchor="middle">${v >= 1000 ? `${v / 1000} GB/s` : `${v} MB/s`}</text>`,
        );
      }
    }
    ids.forEach((id, row) => {
      const ry = y0 + panelHead + row * rowHeight;
      out.push(
        `<text x="${left - 8}" y="${ry + (reads.length * bar) / 2 + 4}" text-anchor="end">${
          esc(id)
        }</text>`,
      );
      reads.forEach((read, k) => {
        const c = r.groups.find((g) => g.input === input && g.read === read)?.results[id];
        if (!c || !(c.mbps > 0)) return;
        const w = Math.max(1, x(c.mbps) - left);
        out.push(
          `<rect x="${left}" y="${ry + k * bar}" width="${w.toFixed(1)}" height="${
            bar - 1
          }" fill="${COLORS[read] ?? "#999"}"><title>${
            esc(
              `${id} ${input} ${read} B: ${c.mbps.toFixed(1)} MB/s, ${c.pctR0.toFixed(2)} % of R0`,
            )
          }</title></rect>`,
        );
      });
    });
    y0 += panelHeight(input);
  });
  out.push("</svg>");
  return out.join("\n") + "\n";
}
