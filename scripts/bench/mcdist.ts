/**
 * mcdist benchmark: how many bytes the parent's host sends to serve one
 * working set to 1, 8 and 32 clones, over multicast and over unicast TCP.
 *
 * Each clone is a separate process in its own network namespace on a Linux
 * bridge (lib/mcdist/netlab.ts) and asks for every block of the working set
 * in its own random order, 16 fetches in flight. The server's counters give
 * bytes sent and requests received vs served; completion time runs from the
 * moment all clones are told to start until the last one has verified every
 * byte. Goal: multicast bytes at 32 clones <= 1.2x bytes at 1 clone, where
 * unicast is 32x.
 *
 *   scripts/bench/mcdist [--blocks N] [--clients 1,8,32] [--mtu 1500] [--json]
 *
 * Needs root (ip netns). Run through the wrapper, which builds first.
 */
import { parseArgs } from 'node:util';
import { createLab } from '../../lib/mcdist/netlab.js';
import { type ScenarioResult, Scenarios } from '../../lib/mcdist/scenario.js';
import type { Transport } from '../../lib/mcdist/session.js';
import { HEADER_BYTES, MAC_BYTES } from '../../lib/mcdist/wire.js';
import { reportMissingRows } from './missing-rows.js';

interface Row {
  clients: number;
  transport: Transport;
  bytesSent: number;
  /** bytesSent / one copy of the working set on the wire. */
  copies: number;
  requestsReceived: number;
  served: number;
  merged: number;
  suppressed: number;
  resends: number;
  losses: number;
  rateCuts: number;
  seconds: number;
  /** Every client got every block, byte-exact. */
  verified: boolean;
}

const { values } = parseArgs({
  options: {
    blocks: { type: 'string', default: String((64 * 1024 * 1024) / 4096) },
    clients: { type: 'string', default: '1,8,32' },
    mtu: { type: 'string', default: '1500' },
    concurrency: { type: 'string', default: '16' },
    json: { type: 'boolean', default: false },
  },
});

const blocks = Number(values.blocks);
const counts = values.clients.split(',').map(Number);
const blockSize = 4096;
if (!Number.isInteger(blocks) || blocks < 1 || counts.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error('usage: mcdist [--blocks N] [--clients 1,8,32] [--mtu 1500] [--concurrency 16] [--json]');
  process.exit(2);
}
if (process.getuid?.() !== 0) {
  console.error('mcdist bench: needs root to create network namespaces');
  process.exit(2);
}
// Let Ctrl-C run the exit hooks that delete the namespaces.
process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));

const progress = (m: string): void => {
  if (!values.json) process.stderr.write(`${m}\n`);
};

function row(clients: number, transport: Transport, r: ScenarioResult): Row {
  const onWire = blocks * (HEADER_BYTES + blockSize + MAC_BYTES);
  return {
    clients,
    transport,
    bytesSent: r.server.bytesSent,
    copies: r.server.bytesSent / onWire,
    requestsReceived: r.server.requestsReceived,
    served: r.server.blocksSent,
    merged: r.server.merged,
    suppressed: r.server.suppressed,
    resends: r.server.resends,
    losses: r.server.losses,
    rateCuts: r.server.rateCuts,
    seconds: r.ms / 1000,
    verified: r.clients.length === clients
      && r.clients.every((c) => c.mismatches === 0 && c.digest === r.expectedDigest && c.wanted === blocks),
  };
}

const mib = (b: number): string => (b / (1024 * 1024)).toFixed(1);

function table(rows: Row[]): string {
  const head = ['clients', 'transport', 'MiB sent', 'x set', 'vs 1 client', 'requests', 'served', 'merged', 'suppr.', 'resends', 'losses', 'cuts', 'seconds', 'verified'];
  const base = new Map(rows.filter((r) => r.clients === counts[0]).map((r) => [r.transport, r.bytesSent]));
  const lines = rows.map((r) => [
    String(r.clients), r.transport, mib(r.bytesSent), r.copies.toFixed(2),
    `${(r.bytesSent / (base.get(r.transport) ?? r.bytesSent)).toFixed(2)}x`,
    String(r.requestsReceived), String(r.served), String(r.merged), String(r.suppressed),
    String(r.resends), String(r.losses), String(r.rateCuts), r.seconds.toFixed(1), r.verified ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...lines.map((l) => l[i]!.length)));
  const fmt = (cells: string[]): string => cells.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [fmt(head), fmt(widths.map((w) => '-'.repeat(w))), ...lines.map(fmt)].join('\n');
}

async function main(): Promise<void> {
  const scenarios = new Scenarios();
  const lab = await createLab({ hosts: Math.max(...counts) + 1, mtu: Number(values.mtu) });
  const rows: Row[] = [];
  try {
    for (const clients of counts) {
      for (const transport of ['multicast', 'tcp'] as const) {
        progress(`mcdist bench: ${clients} client(s), ${transport}, ${blocks} blocks ...`);
        const r = await scenarios.run({
          lab, clients, blocks, blockSize, transport, clientTransport: transport, concurrency: Number(values.concurrency),
        });
        rows.push(row(clients, transport, r));
      }
    }
  } finally {
    scenarios.killAll();
    await lab.destroy();
  }
  const ratio = (t: Transport): number | null => {
    const lo = rows.find((r) => r.transport === t && r.clients === Math.min(...counts));
    const hi = rows.find((r) => r.transport === t && r.clients === Math.max(...counts));
    return lo && hi ? hi.bytesSent / lo.bytesSent : null;
  };
  const summary = {
    blocks,
    blockSize,
    workingSetMiB: (blocks * blockSize) / (1024 * 1024),
    mtu: Number(values.mtu),
    rows,
    bytesRatioMulticast: ratio('multicast'),
    bytesRatioTcp: ratio('tcp'),
    goal: 'multicast bytes at the most clients <= 1.2x bytes at the fewest',
    goalMet: (ratio('multicast') ?? Infinity) <= 1.2,
    allVerified: rows.every((r) => r.verified),
  };
  if (values.json) {
    console.log(JSON.stringify(summary, null, 2));
  } else {
    console.log(`mcdist: ${summary.workingSetMiB} MiB working set (${blocks} x ${blockSize} B blocks), MTU ${summary.mtu}\n`);
    console.log(table(rows));
    const lo = Math.min(...counts);
    const hi = Math.max(...counts);
    console.log(`\nbytes sent, ${hi} clients vs ${lo}: multicast ${summary.bytesRatioMulticast?.toFixed(2)}x, unicast TCP ${summary.bytesRatioTcp?.toFixed(2)}x (goal: multicast <= 1.2x) -> ${summary.goalMet ? 'met' : 'NOT met'}`);
    if (!summary.allVerified) console.log('WARNING: some clients did not get every block byte-exact');
  }
  // A row whose clients did not get every block byte-exact measured nothing worth a ratio.
  const unverified = rows.filter((r) => !r.verified).map((r) => `${r.clients} client(s) ${r.transport} (not byte-exact)`);
  reportMissingRows((l) => (values.json ? console.error(l) : console.log(l)), unverified);
}

main().catch((err: Error) => {
  console.error(`mcdist bench failed: ${err.message}`);
  process.exit(1);
});
