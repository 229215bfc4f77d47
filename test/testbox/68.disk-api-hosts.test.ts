// A disk-backed guest forked through the sf_* API across two hosts (docs/disks.md): the Debian
// guest boots on box 1 with its root disk through a disk family (block-snowflock), writes a file
// and asks for a ticket for 4; the internal cluster manager puts two clones on each box. Every
// clone (on memory on demand) drops its page cache, reads the parent's pre-fork file byte-exact
// from its own overlay over the fork's slice (box 2's through box 1's TLS-PSK front), writes
// and reads back a file of its own, and exits; the parent writes a file after the fork and joins.
// No clone sees a sibling's file or the parent's post-fork one, and the parent sees none of
// theirs. Afterwards neither box holds a clone, overlay, nbd device, vchan server or front.
// The job: images/testguest/programs/disk-share.mjs. The two boxes talk as in 86 (side-channel.ts).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { useFamily } from '../../lib/disk/use-family.js';
import { DEFAULT_DISK_STATE_DIR } from '../../lib/disk/record.js';
import { isMcdistWorker } from '../../lib/disk/detached-worker.js';
import { vbdBackendPath } from '../../lib/xen/clone-vbd.js';
import { loadAddon, type XenStore } from '../../lib/xen/native.js';
import { connectedNbd, env } from './helpers.js';
import { cloneLines, type JobHost } from './guest-job.js';
import { TwoBoxJob } from './two-box-job.js';

const disk = process.env.SNOWFLOCK_DEBIAN_DISK;

function whyNot(): string | false {
  if (env.hosts < 2) return 'single host';
  if (env.flavour === 'stock') return 'Debian\'s Xen has no mem_paging';
  if (env.box > 2) return 'boxes 1 and 2 take part';
  if (!disk) return 'no Debian guest disk (run with --debian-disk)';
  if (!existsSync('/sys/block/nbd0')) return 'this dom0 cannot attach disks: no nbd module loaded';
  return false;
}
const skip = whyNot();

/** The parent's name on box 1, and its disk family's: box 2 opens a family of that name for its clones. */
const PARENT = `sf-disk-${process.pid}`;
const familyOf = (parentName: string) => `dsk${parentName.split('-').pop()}`;
let family: string | undefined;
// Room for two clones of 256 MiB on each box: the manager spreads the four over both. The
// clones read the fork's disk over mcdist (one multicast send per block for both boxes).
const job = new TwoBoxJob<Box2Report>(47021, 560, { diskTransport: 'mcdist' });
const xs: XenStore | undefined = skip ? undefined : new (loadAddon().XenStore)();
/** xvda's device number: the parent's vbd backend is .../vbd/<domid>/51712 */
const XVDA = 51712;

/** What box 2 says when box 1 is done: its clones' SF-JOB lines and what it still holds. */
interface Box2Report { lines: string[]; heldClones: number[]; vchans: number[]; domains: number[]; nbd: string[]; disks: FamilyLeft; diskEvents: string[]; mcdistWorkers: number[] }

/** Slice servers and backings still running on this box (lib/disk/mcdist-worker.js processes). */
function mcdistWorkers(): number[] {
  return readdirSync('/proc').filter((p) => /^\d+$/.test(p)).map(Number).filter(isMcdistWorker);
}

/** The daemon's 'clone-disks' events: how each clone built on a box reads its disk. */
const diskEvents = (box: JobHost) => box.events.filter((e) => e.startsWith('clone-disks '));

/** `overlays`: the family's overlay files other than the parent's own layers (`<parent>.<disk>.<n>.qcow2`). */
interface FamilyLeft { heads: string[]; fronts: string[]; exported: string[]; overlays: string[] }


/** What the family holds on this box (nothing when it never came here). */
async function familyLeft(family: string, parentName: string): Promise<FamilyLeft> {
  const dir = join(DEFAULT_DISK_STATE_DIR, family);
  if (!existsSync(dir)) return { heads: [], fronts: [], exported: [], overlays: [] };
  const overlays = existsSync(join(dir, 'overlays')) ? readdirSync(join(dir, 'overlays')).filter((f) => !f.startsWith(`${parentName}.`)).sort() : [];
  return useFamily(family, {}, async (f) => ({
    heads: f.heads().map((h) => `${h.kind}:${h.vm}/${h.disk}`).sort(),
    fronts: f.fronts().map((x) => x.fork),
    exported: f.slices().filter((s) => !s.released).map((s) => `${s.fork}:${s.vm}/${s.disk}`),
    overlays,
  }));
}

async function closeFamily(family: string): Promise<void> {
  if (!existsSync(join(DEFAULT_DISK_STATE_DIR, family))) return;
  await useFamily(family, {}, (f) => f.shutdown()).catch((e: Error) => process.stderr.write(`# family ${family}: ${e.message}\n`));
  rmSync(join(DEFAULT_DISK_STATE_DIR, family), { recursive: true, force: true });
}

after(async () => {
  await job.close(); // destroys the parent through xl: block-snowflock detaches its disk
  if (family) await closeFamily(family);
  xs?.close();
});

async function box1Job(t: { diagnostic: (s: string) => void }, box: JobHost): Promise<void> {
  const name = PARENT;
  family = familyOf(name);
  const before = box.liveDomids();
  const nbdBefore = connectedNbd();
  const target = `${family}:${name}/xvda:${disk}`;
  const parent = await box.startDebianJob(name, 'disk-share.mjs', ['4'], [`vdev=xvda, access=rw, script=block-snowflock, target=${target}`]);
  try {
    const { end, parentLines, there, lines, context } = await job.ended(t, box, name, parent);
    assert.match(end, /SF-JOB joined destroyed=1,2,3,4 lost=0 unconfirmed=0 died=0/, context);
    for (const vmid of [1, 2, 3, 4]) {
      // Each clone read the parent's pre-fork file from its disk and sees only its own file beside it.
      assert.ok(lines.some((l) => l.includes(`SF-JOB disk vmid=${vmid} pre-fork=exact own=exact seen=clone-${vmid}.bin,pre-fork.bin`)), `clone ${vmid}\n${context}`);
    }
    assert.equal(there.lines.filter((l) => /SF-JOB disk vmid=/.test(l)).length, 2, 'two of the clones ran on box 2');
    // Every clone, on either box, read the slice over mcdist, none through the front.
    const transports = [...diskEvents(box), ...there.diskEvents];
    t.diagnostic(transports.join('\n'));
    assert.equal(transports.length, 4, `a clone-disks event per clone: ${transports.join(' | ')}`);
    for (const e of transports) assert.match(e, /"disks":"xvda:mcdist"/, 'the clone reads its disk over mcdist');
    assert.match(parentLines, /SF-JOB parent-disk pre-fork=exact seen=post-fork\.bin,pre-fork\.bin/, 'no clone\'s file reached the parent');
    await box.assertNothingLeft(parent, before);
    // The parent keeps its own disk; the fork's front and slice export ended with the join.
    assert.deepEqual(await familyLeft(family, name), { heads: [`parent:${name}/xvda`], fronts: [], exported: [], overlays: [] }, 'box 1 holds only the parent\'s disk');
    const parentNbd = (xs!.read(`${vbdBackendPath(parent, XVDA)}/physical-device-path`) ?? '').replace('/dev/', '');
    assert.deepEqual(connectedNbd(), [...nbdBefore, parentNbd].sort(), 'box 1 holds only the parent\'s nbd device');
    assert.deepEqual({ held: there.heldClones, vchans: there.vchans, nbd: there.nbd }, { held: [], vchans: [], nbd: [] }, 'box 2 holds no clone record, vchan server or nbd device');
    assert.deepEqual(there.disks.heads, [], 'box 2 holds no clone overlay');
    assert.deepEqual(there.disks.overlays, [], 'box 2 keeps no overlay file');
    assert.deepEqual(there.domains, [0], 'box 2 has no domain left but dom0');
    assert.deepEqual({ box1: mcdistWorkers(), box2: there.mcdistWorkers }, { box1: [], box2: [] }, 'no slice server or backing left');
  } finally {
    await box.endJob(parent, before);
  }
}

async function box2Report(box: JobHost, parentName: string): Promise<Box2Report> {
  family = familyOf(parentName);
  const vchans = await box.settledVchanEndpoints();
  return { lines: cloneLines(parentName), heldClones: box.heldClones(), vchans, domains: box.liveDomids(), nbd: connectedNbd(), disks: await familyLeft(family, parentName), diskEvents: diskEvents(box), mcdistWorkers: mcdistWorkers() };
}

test('the Debian guest with its root disk forks into 4 clones over two hosts through sf_clone; each reads the fork\'s files and writes its own', { timeout: 1_700_000 }, async (t) => {
  if (skip) return t.skip(skip);
  if (env.box === 1) await job.runBox1((box) => box1Job(t, box));
  else await job.runBox2(box2Report);
});
