// A parallel job through the sf_* API, run by the Node test guest (agent: sf.workload=node).
//   node share-sum.mjs N TOTAL [join|kill [SECONDS|go]|net]
// The parent asks for a ticket of N clones and forks; clone k of m sums its share of 1..TOTAL
// (the numbers congruent to k mod m), prints it and exits; the parent joins and prints the
// report. With `kill`, clones work until the parent kills them: SECONDS (5) after the fork, or
// with `go` once dom0 writes the parent's xenstore key data/sf-job/go (the test box writes it
// when it has seen every clone at work, since a clone's first steps on memory on demand can
// take minutes under emulation).
// With `net`, each clone also sends its share to the parent over TCP (eth0; the guest library
// gave the clone its own address), and the parent prints the combined result before joining.
// Every line starts with SF-JOB so the test box can read the console.
import { execFileSync } from 'node:child_process';
import net from 'node:net';
import { networkInterfaces } from 'node:os';
import { sf_request_ticket, sf_clone, sf_exit, sf_join, sf_kill, SfError } from './dist/lib/api/index.js';

const [n = '2', total = '1000000', mode = 'join', killAfter = '5'] = process.argv.slice(2);
const say = (line) => console.log(`SF-JOB ${line}`);

const RESULT_PORT = 7400;
const eth0 = () => networkInterfaces().eth0?.find((a) => a.family === 'IPv4')?.address;

/**
 * A clone's share to the parent, retried until the parent has it: each attempt gives up after
 * 15 s (an unanswered SYN would wait two minutes) and failures are printed, so a share that never
 * arrives says why. The parent closes the connection once it has read the line.
 */
async function sendShare(parentAddress, vmid, sum) {
  for (let attempt = 1; ; attempt++) {
    const t0 = Date.now();
    let connected = false;
    try {
      await new Promise((resolve, reject) => {
        const s = net.connect(RESULT_PORT, parentAddress, () => { connected = true; s.write(`${vmid} ${sum}\n`); });
        s.setTimeout(15_000, () => s.destroy(new Error('no answer within 15 s')));
        s.once('error', reject);
        s.once('end', () => { s.destroy(); resolve(); });
      });
      say(`sent vmid=${vmid} attempt=${attempt} in-ms=${Date.now() - t0}`);
      return;
    } catch (e) {
      say(`send vmid=${vmid} attempt=${attempt} failed after ${Date.now() - t0} ms (${connected ? 'connected' : 'not connected'}): ${e.code ?? e.message}`);
      if (attempt >= 60) throw e;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/** The parent's `go`: dom0 writes data/sf-job/go in this VM's xenstore home. */
async function waitForGo() {
  for (const deadline = Date.now() + 600_000; Date.now() < deadline;) {
    try {
      execFileSync('xenstore-read', ['data/sf-job/go'], { stdio: ['ignore', 'pipe', 'ignore'] });
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
  throw new Error('no go from dom0 (data/sf-job/go) within 10 minutes');
}

/** The parent's side: one line "vmid sum" from each of m clones, within 10 minutes. */
function collectShares(m) {
  return new Promise((resolve, reject) => {
    const got = new Map();
    const timer = setTimeout(() => reject(new Error(`shares from ${[...got.keys()].join(',') || 'no clone'} of ${m} within 10 minutes`)), 600_000);
    const server = net.createServer((s) => {
      let data = '';
      s.on('data', (d) => {
        data += d;
        if (!data.endsWith('\n')) return;
        s.end();
        const [vmid, sum] = data.trim().split(' ');
        got.set(Number(vmid), BigInt(sum));
        say(`received vmid=${vmid} from=${s.remoteAddress}`);
        if (got.size === m) { clearTimeout(timer); server.close(); resolve(got); }
      });
    });
    server.on('error', reject);
    server.listen(RESULT_PORT);
  });
}

function shareOf(vmid, clones, upTo) {
  let sum = 0n;
  for (let i = BigInt(vmid); i <= upTo; i += BigInt(clones)) sum += i;
  return sum;
}

try {
  const t0 = Date.now();
  const ticket = await sf_request_ticket(Number(n));
  say(`ticket ${ticket.ticket} granted=${ticket.granted}`);
  const parentAddress = eth0();
  if (mode === 'net' && !parentAddress) throw new Error('net mode needs eth0 with an IPv4 address (sf.ip)');
  const vmid = await sf_clone(ticket);
  if (vmid > 0) {
    say(`clone vmid=${vmid} forked-in-ms=${Date.now() - t0}${mode === 'net' ? ` address=${eth0()}` : ''}`);
    if (mode === 'kill') for (let i = 0; ; i++) { shareOf(vmid, ticket.granted, 200_000n); say(`working vmid=${vmid} round=${i}`); }
    const sum = shareOf(vmid, ticket.granted, BigInt(total));
    say(`share vmid=${vmid} of=${ticket.granted} sum=${sum}`);
    if (mode === 'net') await sendShare(parentAddress, vmid, sum);
    await sf_exit();
  } else {
    say(`parent forked clones=${ticket.granted} in-ms=${Date.now() - t0}`);
    if (mode === 'kill' && killAfter === 'go') await waitForGo();
    else if (mode === 'kill') await new Promise((r) => setTimeout(r, Number(killAfter) * 1000));
    if (mode === 'net') {
      const got = await collectShares(ticket.granted);
      const from = [...got.keys()].sort((a, b) => a - b);
      say(`net-result sum=${[...got.values()].reduce((a, c) => a + c, 0n)} from=${from.join(',')}`);
    }
    const k0 = Date.now();
    const report = mode === 'kill' ? await sf_kill(ticket) : await sf_join(ticket);
    say(`${report.outcome} destroyed=${report.destroyed.join(',')} lost=${report.lost.length} unconfirmed=${report.unconfirmed.length} died=${report.died?.length ?? 0} in-ms=${Date.now() - k0}`);
  }
  process.exit(0);
} catch (e) {
  say(e instanceof SfError ? `error code=${e.code} ${e.message}` : `error ${e?.stack ?? e}`);
  process.exit(1);
}
