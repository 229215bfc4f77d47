// Clones on the network: a Node guest with a vif on dom0's guest bridge forks into 2; each
// clone gets a vif of its own (the parent's bridge, a new MAC), the guest library moves it to
// the parent's address plus its vmid, and it sends its share to the parent over TCP. The parent
// prints the combined result, then joins; afterwards no clone vif, backend entry or domain is
// left. (Needs Xen with mem_paging.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { memPagingSkip, openXen, waitUntil, GUEST_BRIDGE } from './helpers.js';
import { cloneLines, consoleTail, gauss, jobLines, startSingleHost, type JobHost, type MasterHandle } from './guest-job.js';

let skip: string | false = false;
let master: MasterHandle | undefined;
let box: JobHost | undefined;
const PARENT_IP = '10.98.0.10';

before(async () => {
  const xc = openXen();
  skip = await memPagingSkip(xc);
  xc.close();
  if (!skip && !existsSync(`/sys/class/net/${GUEST_BRIDGE}/bridge`)) skip = `no bridge ${GUEST_BRIDGE} in this dom0`;
  if (skip) return;
  ({ master, box } = await startSingleHost());
});

after(async () => {
  await box?.close();
  await master?.close();
});

/**
 * dom0's neighbour entry for a guest address; null while unresolved. With `poke`, a TCP connect
 * to the discard port first (refused or not, it makes dom0 resolve the address).
 */
function neighbour(address: string, o: { poke?: boolean } = {}): string | null {
  if (o.poke) spawnSync('busybox', ['nc', '-w', '1', address, '9'], { stdio: 'ignore', input: '' });
  const entry = spawnSync('ip', ['neigh', 'show', address, 'dev', GUEST_BRIDGE], { encoding: 'utf8' }).stdout;
  return /lladdr (\S+)/.exec(entry)?.[1] ?? null;
}

/**
 * The bridge ports its forwarding table has put `mac` behind (sysfs brforward: 16-byte
 * entries, MAC first, then the port number's low byte; the high byte is at offset 12).
 */
function portsHolding(mac: string): string[] {
  const table = readFileSync(`/sys/class/net/${GUEST_BRIDGE}/brforward`);
  const portNames = new Map(readdirSync(`/sys/class/net/${GUEST_BRIDGE}/brif`)
    .map((p) => [Number(readFileSync(`/sys/class/net/${GUEST_BRIDGE}/brif/${p}/port_no`, 'utf8')), p] as const));
  const want = Buffer.from(mac.replaceAll(':', ''), 'hex');
  const ports: string[] = [];
  for (let o = 0; o + 16 <= table.length; o += 16) {
    if (table.subarray(o, o + 6).equals(want)) ports.push(portNames.get(table[o + 6]! | (table[o + 12]! << 8)) ?? `port ${table[o + 6]}`);
  }
  return ports;
}

// Guests' vifs only: with several boxes, the box's eth0 is a port of the bridge too.
const vifsOnBridge = () => readdirSync(`/sys/class/net/${GUEST_BRIDGE}/brif`).filter((port) => port.startsWith('vif')).sort();

test('clones get their own vif and address and send their shares to the parent over the network', async (t) => {
  if (skip) return t.skip(skip);
  const b = box!;
  const name = `sf-net-${process.pid}`;
  const domainsBefore = b.liveDomids();
  const vifBackends = () => (b.xs.directory('/local/domain/0/backend/vif') ?? []).map(Number).sort((x, y) => x - y);
  const backendsBefore = vifBackends();
  const parent = await b.startJob(name, 'node', 'share-sum.mjs', ['2', '100000', 'net'], { ip: `${PARENT_IP}/24` });
  try {
    // dom0 is one of the parent's peers: it learns the parent's MAC before the fork, and the
    // clones must not steer it elsewhere (they resume holding the parent's address).
    const parentMac = b.xs.read(`/local/domain/0/backend/vif/${parent}/0/mac`);
    await waitUntil('dom0 reaches the parent', () => neighbour(PARENT_IP, { poke: true }) === parentMac, 120_000)
      .catch(() => assert.fail(`dom0 never resolved ${PARENT_IP} to the parent's ${parentMac} (neighbour: ${neighbour(PARENT_IP)})`));
    // While the clones run, the bridge must keep the parent's MAC behind the parent's vif, and
    // dom0 the parent's address at the parent's MAC: sampled, since a clone's destroy would
    // take any wrong entry with it.
    const seen = { ports: new Set<string>(), neighbours: new Set<string>() };
    const sampler = setInterval(() => {
      for (const p of portsHolding(parentMac!)) seen.ports.add(p);
      seen.neighbours.add(neighbour(PARENT_IP) ?? 'none');
    }, 250);
    const end = await b.jobEnd(name, parent, /SF-JOB (joined|killed|error)/, 900_000).finally(() => clearInterval(sampler));
    const lines = jobLines(name);
    t.diagnostic(lines);
    const clones = cloneLines(name);
    const context = `parent:\n${consoleTail(name)}\nclones:\n${clones.join('\n')}`;
    assert.match(end, /SF-JOB joined destroyed=1,2 lost=0 unconfirmed=0 died=0/, context);
    const result = /SF-JOB net-result sum=(\d+) from=([\d,]+)/.exec(lines);
    assert.ok(result, `the parent printed no combined result\n${context}`);
    assert.equal(BigInt(result[1]!), gauss(100_000n), 'the shares the parent received add up to the whole job');
    assert.equal(result[2], '1,2');
    // Each clone had its own address, the parent's plus its vmid, and that is where its share came from.
    for (const vmid of [1, 2]) {
      assert.ok(clones.some((l) => l.includes(`clone vmid=${vmid} `) && l.includes(`address=10.98.0.${10 + vmid}`)), `clone ${vmid}'s address\n${context}`);
      assert.match(lines, new RegExp(`received vmid=${vmid} from=(::ffff:)?10\\.98\\.0\\.${10 + vmid}\\b`));
    }
    assert.deepEqual([...seen.ports], [`vif${parent}.0`], 'the bridge kept the parent\'s MAC behind the parent\'s vif');
    assert.deepEqual([...seen.neighbours], [parentMac], 'dom0 kept the parent\'s address at the parent\'s MAC');
    await b.assertNothingLeft(parent, domainsBefore);
    // The clones' vifs left the bridge and their backends left xenstore; the parent's stays.
    await waitUntil('only the parent\'s vif on the bridge', () => vifsOnBridge().join() === `vif${parent}.0`, 10_000)
      .catch(() => assert.deepEqual(vifsOnBridge(), [`vif${parent}.0`]));
    assert.deepEqual(vifBackends(), [...backendsBefore, parent].sort((x, y) => x - y), 'vif backends in xenstore');
  } finally {
    await b.endJob(parent, domainsBefore);
  }
});
