// A forked job on a guest's root disk, through the sf_* API (the Debian guest: images/debian).
//   node disk-share.mjs N
// The parent writes a file of seeded pseudo-random bytes to its disk and syncs, asks for a ticket
// of N clones and forks. Each clone drops its page cache (a clone starts with its parent's, so a
// read must come from its disk), checks the parent's file byte-exact, writes and reads back a
// file of its own, lists what it sees and exits. After the fork the parent writes a second file,
// joins, and lists what it sees: no clone's file may reach it, and neither may its second file
// reach a clone. Every line starts with SF-JOB so the test box can read the console.
import { createHash } from 'node:crypto';
import { readFileSync, readdirSync, writeFileSync, mkdirSync, openSync, fsyncSync, closeSync } from 'node:fs';
import { sf_request_ticket, sf_clone, sf_exit, sf_join, SfError } from './dist/lib/api/index.js';

const [n = '2'] = process.argv.slice(2);
const say = (line) => console.log(`SF-JOB ${line}`);
const DIR = '/root/sf-job';
const MiB = 1024 * 1024;

function bytes(size, seed) {
  const b = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i += 4) {
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
}
const sha = (b) => createHash('sha256').update(b).digest('hex').slice(0, 16);

function writeSynced(path, data) {
  writeFileSync(path, data);
  const fd = openSync(path, 'r');
  fsyncSync(fd);
  closeSync(fd);
}

/** Drops the page cache, so the next reads come from the disk. */
function dropCaches() {
  writeFileSync('/proc/sys/vm/drop_caches', '3');
}

const seen = () => readdirSync(DIR).sort().join(',');

try {
  mkdirSync(DIR, { recursive: true });
  const pre = bytes(8 * MiB, 1234);
  writeSynced(`${DIR}/pre-fork.bin`, pre);
  say(`pre-fork sha=${sha(pre)}`);
  const ticket = await sf_request_ticket(Number(n));
  say(`ticket ${ticket.ticket} granted=${ticket.granted}`);
  const t0 = Date.now();
  const vmid = await sf_clone(ticket);
  if (vmid > 0) {
    dropCaches();
    const read = readFileSync(`${DIR}/pre-fork.bin`);
    const own = bytes(2 * MiB, 5000 + vmid);
    writeSynced(`${DIR}/clone-${vmid}.bin`, own);
    dropCaches();
    const back = readFileSync(`${DIR}/clone-${vmid}.bin`);
    say(`disk vmid=${vmid} pre-fork=${read.equals(pre) ? 'exact' : `differs sha=${sha(read)}`} own=${back.equals(own) ? 'exact' : 'differs'} seen=${seen()}`);
    await sf_exit();
  } else {
    say(`parent forked clones=${ticket.granted} in-ms=${Date.now() - t0}`);
    writeSynced(`${DIR}/post-fork.bin`, bytes(1 * MiB, 999));
    const report = await sf_join(ticket);
    dropCaches();
    const read = readFileSync(`${DIR}/pre-fork.bin`);
    say(`parent-disk pre-fork=${read.equals(pre) ? 'exact' : 'differs'} seen=${seen()}`);
    say(`${report.outcome} destroyed=${report.destroyed.join(',')} lost=${report.lost.length} unconfirmed=${report.unconfirmed.length} died=${report.died?.length ?? 0}`);
  }
  process.exit(0);
} catch (e) {
  say(e instanceof SfError ? `error code=${e.code} ${e.message}` : `error ${e?.stack ?? e}`);
  process.exit(1);
}
