// A parallel job through the sf_* API, run by the Node test guest (agent: sf.workload=node).
//   node share-sum.mjs N TOTAL [join|kill [SECONDS]]
// The parent asks for a ticket of N clones and forks; clone k of m sums its share of 1..TOTAL
// (the numbers congruent to k mod m), prints it and exits; the parent joins and prints the
// report. With `kill`, clones work until the parent kills them SECONDS (5) after the fork.
// Every line starts with SF-JOB so the test box can read the console.
import { sf_request_ticket, sf_clone, sf_exit, sf_join, sf_kill, SfError } from './dist/lib/api/index.js';

const [n = '2', total = '1000000', mode = 'join', killAfter = '5'] = process.argv.slice(2);
const say = (line) => console.log(`SF-JOB ${line}`);

function shareOf(vmid, clones, upTo) {
  let sum = 0n;
  for (let i = BigInt(vmid); i <= upTo; i += BigInt(clones)) sum += i;
  return sum;
}

try {
  const t0 = Date.now();
  const ticket = await sf_request_ticket(Number(n));
  say(`ticket ${ticket.ticket} granted=${ticket.granted}`);
  const vmid = await sf_clone(ticket);
  if (vmid > 0) {
    say(`clone vmid=${vmid} forked-in-ms=${Date.now() - t0}`);
    if (mode === 'kill') for (let i = 0; ; i++) { shareOf(vmid, ticket.granted, 200_000n); say(`working vmid=${vmid} round=${i}`); }
    say(`share vmid=${vmid} of=${ticket.granted} sum=${shareOf(vmid, ticket.granted, BigInt(total))}`);
    await sf_exit();
  } else {
    say(`parent forked clones=${ticket.granted} in-ms=${Date.now() - t0}`);
    if (mode === 'kill') await new Promise((r) => setTimeout(r, Number(killAfter) * 1000));
    const k0 = Date.now();
    const report = mode === 'kill' ? await sf_kill(ticket) : await sf_join(ticket);
    say(`${report.outcome} destroyed=${report.destroyed.join(',')} lost=${report.lost.length} unconfirmed=${report.unconfirmed.length} died=${report.died?.length ?? 0} in-ms=${Date.now() - k0}`);
  }
  process.exit(0);
} catch (e) {
  say(e instanceof SfError ? `error code=${e.code} ${e.message}` : `error ${e?.stack ?? e}`);
  process.exit(1);
}
