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
import { env } from './helpers.js';
import { cloneLines, gauss, shares, type JobHost } from './guest-job.js';
import { TwoBoxJob } from './two-box-job.js';

const PARENT_IP = '10.98.0.20';
/** The guest library gives clone k the parent's address plus k. */
const cloneAddress = (vmid: number) => `10.98.0.${20 + vmid}`;
const skip = env.hosts < 2 ? 'single host' : env.flavour === 'stock' ? 'Debian\'s Xen has no mem_paging' : env.box > 2 ? 'boxes 1 and 2 take part' : false;

/** What box 2 says when box 1 is done: its clones' SF-JOB lines and what it still holds. */
interface Box2Report { lines: string[]; heldClones: number[]; vchans: number[]; domains: number[] }

// Room for two clones of 384 MiB on each box: the manager spreads the four over both.
const job = new TwoBoxJob<Box2Report>(47020, 800);
after(() => job.close());

async function box1Job(t: { diagnostic: (s: string) => void }, box: JobHost): Promise<void> {
  const name = `sf-hosts-${process.pid}`;
  const before = box.liveDomids();
  const parent = await box.startJob(name, 'node', 'share-sum.mjs', ['4', '1000000', 'net'], { ip: `${PARENT_IP}/24` });
  try {
    const { end, parentLines, there, lines, context } = await job.ended(t, box, name, parent);
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

async function box2Report(box: JobHost, parentName: string): Promise<Box2Report> {
  const vchans = await box.settledVchanEndpoints();
  return { lines: cloneLines(parentName), heldClones: box.heldClones(), vchans, domains: box.liveDomids() };
}

test('a guest program forks into 4 clones over two hosts; they compute their shares; the parent joins', { timeout: 1_700_000 }, async (t) => {
  if (skip) return t.skip(skip);
  if (env.box === 1) await job.runBox1((box) => box1Job(t, box));
  else await job.runBox2(box2Report);
});
