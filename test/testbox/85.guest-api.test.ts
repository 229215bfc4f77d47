// The sf_* API from inside a real guest: a Node program in a PVH guest (the Node test guest,
// images/testguest/build-node.sh) asks this host's daemon for a ticket over vchan, forks itself,
// each clone computes its share and exits, the parent joins. A master and the host daemon with
// the Xen backend and the vchan guest transport run in this process. Afterwards no clone domain,
// clone record, vchan endpoint, event channel or grant of the job remains. Then the same job
// from a shell script through the sf-* wrappers, and sf_kill while the clones work.
// (Needs Xen with mem_paging.)
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { memPagingSkip, openXen, waitUntil } from './helpers.js';
import { cloneLines, consoleTail, gauss, jobLines, shares, startSingleHost, xenHandles, type JobHost, type MasterHandle } from './guest-job.js';

let skip: string | false = false;
let master: MasterHandle | undefined;
let box: JobHost | undefined;

before(async () => {
  const xc = openXen();
  skip = await memPagingSkip(xc);
  xc.close();
  if (skip) return;
  ({ master, box } = await startSingleHost());
});

after(async () => {
  await box?.close();
  await master?.close();
});

test('a guest program requests a ticket for 2 over vchan, forks, the clones compute their shares, the parent joins', async (t) => {
  if (skip) return t.skip(skip);
  const b = box!;
  const name = `sf-api-${process.pid}`;
  const before = b.liveDomids();
  const handlesBefore = xenHandles();
  const parent = await b.startJob(name, 'node', 'share-sum.mjs', ['2', '1000000', 'join']);
  try {
    const end = await b.jobEnd(name, parent, /SF-JOB (joined|killed|error)/, 900_000);
    t.diagnostic(jobLines(name));
    assert.match(end, /SF-JOB joined destroyed=1,2 lost=0 unconfirmed=0 died=0/, `parent:\n${consoleTail(name)}\nclones:\n${cloneLines(name).join('\n')}`);
    const got = shares(cloneLines(name));
    assert.deepEqual([...got.keys()].sort(), [1, 2], `clones: ${cloneLines(name).join('\n')}`);
    assert.equal([...got.values()].reduce((a, c) => a + c, 0n), gauss(1_000_000n), 'the shares add up to the whole job');
    await b.assertNothingLeft(parent, before);
    assert.equal(b.xc.domainInfo(parent).shutdownReason, undefined, 'the parent runs on');
  } finally {
    await b.endJob(parent, before); // the next job needs its memory, pass or fail
  }
  await waitUntil('the daemons hold no event channel or grant of the job', () => xenHandles() === handlesBefore, 10_000)
    .catch(() => assert.equal(xenHandles(), handlesBefore, 'event channel and grant handles in dom0'));
});

test('the same job from a shell script through the sf-* wrappers', async (t) => {
  if (skip) return t.skip(skip);
  const b = box!;
  const name = `sf-sh-${process.pid}`;
  const before = b.liveDomids();
  const parent = await b.startJob(name, 'shell', 'share-sum.sh', ['2', '3000']);
  try {
    const end = await b.jobEnd(name, parent, /SF-JOB (joined|error)/, 900_000);
    t.diagnostic(jobLines(name));
    assert.match(end, /SF-JOB joined rc=0 joined t-\S+: 2 clones, destroyed 1 2/, `parent:\n${consoleTail(name)}\nclones:\n${cloneLines(name).join('\n')}`);
    const got = shares(cloneLines(name));
    assert.deepEqual([...got.keys()].sort(), [1, 2]);
    assert.equal([...got.values()].reduce((a, c) => a + c, 0n), gauss(3000n));
    await b.assertNothingLeft(parent, before);
  } finally {
    await b.endJob(parent, before);
  }
});

test('sf_kill from the guest ends clones that are still working', async (t) => {
  if (skip) return t.skip(skip);
  const b = box!;
  const name = `sf-kill-${process.pid}`;
  const before = b.liveDomids();
  const parent = await b.startJob(name, 'node', 'share-sum.mjs', ['2', '0', 'kill', 'go']);
  try {
    // The parent kills once told to, and it is told once both clones are seen at work: a clone's
    // first steps on memory on demand take from seconds to minutes under emulation.
    const working = () => new Set(cloneLines(name).map((l) => /SF-JOB working vmid=(\d+)/.exec(l)?.[1]).filter(Boolean)).size;
    const ended = () => /SF-JOB (error|killed)/.test(jobLines(name));
    await waitUntil('both clones print working lines', () => working() === 2 || ended(), 600_000)
      .catch((e) => assert.fail(`${(e as Error).message}; parent:\n${consoleTail(name)}\nclones:\n${cloneLines(name).slice(-10).join('\n')}`));
    b.xs.write(`/local/domain/${parent}/data/sf-job/go`, '1');
    const end = await b.jobEnd(name, parent, /SF-JOB (killed|joined|error)/, 900_000);
    t.diagnostic(jobLines(name));
    assert.match(end, /SF-JOB killed destroyed=1,2 lost=0 unconfirmed=0 died=0 in-ms=\d+/, `parent:\n${consoleTail(name)}`);
    t.diagnostic(`sf_kill of 2 working clones, as the guest saw it: ${/in-ms=(\d+)/.exec(end)![1]} ms (emulated)`);
    await b.assertNothingLeft(parent, before);
  } finally {
    await b.endJob(parent, before);
  }
});
