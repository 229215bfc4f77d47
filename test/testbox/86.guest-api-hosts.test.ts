// The sf_* API across two hosts, issue #6's acceptance job: a Node program in a guest of box 1
// asks for a ticket for 4 and forks; the internal cluster manager spreads the clones over box 1
// and box 2, whose host daemon builds its two from the fork image and fetches their memory from
// box 1's memserver over the test box network. Every clone computes its share, sends it to the
// parent over the guests' network (the boxes' guest bridges are one segment) and exits; the
// parent prints the combined result and joins. Box 1 runs the master and its host daemon; box 2
// its host daemon, with the cluster key handed over a side channel. At the end box 2 reports its
// clones' console lines and what it still holds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { env, sleep, waitUntil } from './helpers.js';
import { JobHost, cloneLines, consoleTail, gauss, jobLines, shares, startMaster, type MasterHandle } from './guest-job.js';

const SIDE_PORT = 47020;
const BOX1 = '10.99.0.1';
const BOX2 = '10.99.0.2';
const PARENT_IP = '10.98.0.20';
/** The guest library gives clone k the parent's address plus k. */
const cloneAddress = (vmid: number) => `10.98.0.${20 + vmid}`;
const skip = env.hosts < 2 ? 'single host' : env.flavour === 'stock' ? 'Debian\'s Xen has no mem_paging' : env.box > 2 ? 'boxes 1 and 2 take part' : false;
let master: MasterHandle | undefined;
let box: JobHost | undefined;
let side: net.Server | undefined;

after(async () => {
  side?.close();
  await box?.close();
  await master?.close();
});

/** What box 2 says when box 1 is done: its clones' SF-JOB lines and what it still holds. */
interface Box2Report { lines: string[]; heldClones: number[]; vchans: number[]; domains: number[] }

/**
 * Box 1's side channel: hands box 2 the cluster key, and at the end asks it for its report.
 * One connection from box 2 stays open for the whole run. When box 1's part fails, abort()
 * tells box 2 (now or whenever it connects) so it fails at once instead of waiting out its timeout.
 */
function serveSide(key: Buffer, parentName: () => string) {
  let connected!: (s: net.Socket) => void;
  const box2 = new Promise<net.Socket>((r) => { connected = r; });
  let aborted: string | null = null;
  side = net.createServer((s) => {
    if (aborted !== null) return void s.end(`abort ${aborted}\n`);
    s.write(`${key.toString('hex')}\n`);
    connected(s);
  }).listen(SIDE_PORT, BOX1);
  const report = async (): Promise<Box2Report> => {
    const s = await box2;
    let data = '';
    const done = new Promise<Box2Report>((resolve, reject) => {
      s.on('data', (d) => { data += d; if (data.endsWith('\n')) resolve(JSON.parse(data) as Box2Report); });
      s.on('close', () => reject(new Error(`box 2 closed the side channel: ${data}`)));
    });
    s.write(`report ${parentName()}\n`);
    return done;
  };
  const abort = (why: string) => {
    aborted = why.split('\n')[0]!.slice(0, 200);
    void Promise.race([box2, Promise.resolve(null)]).then((s) => s?.end(`abort ${aborted}\n`));
  };
  return { box2, report, abort };
}

async function box1(t: { diagnostic: (s: string) => void }): Promise<void> {
  const key = randomBytes(32);
  const name = `sf-hosts-${process.pid}`;
  const sideChannel = serveSide(key, () => name);
  try {
    await box1Job(t, key, name, sideChannel);
  } catch (e) {
    sideChannel.abort(`box 1 failed: ${(e as Error).message}`);
    throw e;
  }
}

async function box1Job(t: { diagnostic: (s: string) => void }, key: Buffer, name: string, sideChannel: ReturnType<typeof serveSide>): Promise<void> {
  master = await startMaster(key, BOX1);
  box = new JobHost();
  // Room for two clones of 384 MiB on each box: the manager spreads the four over both.
  await box.start({ host: 'box1', key, master: { host: BOX1, port: master.port }, advertise: BOX1, memoryMiB: 800 });
  await sideChannel.box2;
  await waitUntil('box 2 to register with the master', () => master!.hosts().includes('box2'), 600_000);
  const before = box.liveDomids();
  const parent = await box.startJob(name, 'node', 'share-sum.mjs', ['4', '1000000', 'net'], { ip: `${PARENT_IP}/24` });
  try {
    const end = await box.jobEnd(name, parent, /SF-JOB (joined|killed|error)/, 1_200_000);
    const parentLines = jobLines(name);
    t.diagnostic(parentLines);
    const there = await sideChannel.report();
    const lines = [...cloneLines(name), ...there.lines];
    const context = `parent:\n${consoleTail(name)}\nclones:\n${lines.join('\n')}`;
    t.diagnostic(`clones sending their shares: ${lines.filter((l) => /SF-JOB (sent|send) /.test(l)).join(' | ')}`);
    assert.match(end, /SF-JOB joined destroyed=1,2,3,4 lost=0 unconfirmed=0 died=0/, context);
    const got = shares(lines);
    assert.deepEqual([...got.keys()].sort(), [1, 2, 3, 4], context);
    assert.equal(shares(there.lines).size, 2, 'two of the clones ran on box 2');
    assert.equal([...got.values()].reduce((a, c) => a + c, 0n), gauss(1_000_000n), 'the shares add up to the whole job');
    // The parent received every share over the network, each from its clone's own address,
    // box 2's included.
    const result = /SF-JOB net-result sum=(\d+) from=([\d,]+)/.exec(parentLines);
    assert.ok(result, `the parent printed no combined result\n${context}`);
    assert.equal(BigInt(result[1]!), gauss(1_000_000n), 'the shares the parent received add up to the whole job');
    assert.equal(result[2], '1,2,3,4');
    for (const vmid of [1, 2, 3, 4]) {
      assert.match(parentLines, new RegExp(`received vmid=${vmid} from=(::ffff:)?${cloneAddress(vmid).replaceAll('.', '\\.')}\\b`), context);
    }
    await box.assertNothingLeft(parent, before);
    assert.deepEqual({ held: there.heldClones, vchans: there.vchans }, { held: [], vchans: [] }, 'box 2 holds no clone record or vchan server');
    assert.deepEqual(there.domains, [0], 'box 2 has no domain left but dom0');
  } finally {
    await box.endJob(parent, before);
  }
}

async function box2(): Promise<void> {
  // Box 1 runs the single-host suites first: that takes many minutes under TCG.
  const s = await connectWithRetry(SIDE_PORT, BOX1, 1_500_000);
  const lines = readLines(s);
  const key = Buffer.from(box1Says(await lines.next()), 'hex');
  box = new JobHost();
  await box.start({ host: 'box2', key, master: { host: BOX1, port: 7311 }, advertise: BOX2, memoryMiB: 800 });
  const request = box1Says(await lines.next()); // "report <parent name>" once box 1's parent joined
  const parentName = request.split(' ')[1] ?? '';
  const vchans = await box.settledVchanEndpoints();
  const report: Box2Report = {
    lines: cloneLines(parentName), heldClones: box.heldClones(), vchans, domains: box.liveDomids(),
  };
  s.end(`${JSON.stringify(report)}\n`);
}

test('a guest program forks into 4 clones over two hosts; they compute their shares; the parent joins', { timeout: 1_700_000 }, async (t) => {
  if (skip) return t.skip(skip);
  if (env.box === 1) await box1(t);
  else await box2();
});

/** A line from box 1; its "abort <why>" ends box 2's part with box 1's reason. */
function box1Says(line: string): string {
  const l = line.trim();
  if (l.startsWith('abort ')) throw new Error(`box 1 gave up, so box 2 stops: ${l.slice('abort '.length)}`);
  return l;
}

async function connectWithRetry(port: number, host: string, timeoutMs: number): Promise<net.Socket> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const s = await new Promise<net.Socket | null>((resolve) => {
      const c = net.connect(port, host);
      c.once('connect', () => resolve(c));
      c.once('error', () => resolve(null));
    });
    if (s) return s;
    if (Date.now() > deadline) throw new Error(`box 1 never opened its side channel at ${host}:${port}`);
    await sleep(1000);
  }
}

/** Line by line from a socket: next() resolves with the next line, rejects when it closes first. */
function readLines(s: net.Socket): { next(): Promise<string> } {
  let buf = '';
  const waiting: { resolve: (l: string) => void; reject: (e: Error) => void }[] = [];
  const ready: string[] = [];
  s.on('data', (d) => {
    buf += d;
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiting.shift();
      if (w) w.resolve(line);
      else ready.push(line);
    }
  });
  s.on('close', () => { for (const w of waiting.splice(0)) w.reject(new Error('box 1 closed the side channel')); });
  return {
    next: () => (ready.length ? Promise.resolve(ready.shift()!) : new Promise((resolve, reject) => waiting.push({ resolve, reject }))),
  };
}
