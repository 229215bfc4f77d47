// The shell wrapper: argument parsing, what goes to stdout, and exit codes scripts can trust.
import { describe, expect, it } from 'vitest';
import { parseArgs } from '../../../lib/api/cli-args.js';
import { Exit, runCli } from '../../../lib/api/cli-run.js';
import { ChannelUnavailableError, type GuestChannel } from '../../../lib/api/index.js';
import { SfError } from '../../../lib/daemon/errors.js';
import type { EndReport } from '../../../lib/daemon/protocol.js';

describe('parseArgs', () => {
  it('reads each command, with sf- names and symlinks', () => {
    expect(parseArgs(['request-ticket', '4', '--hierarchical'])).toEqual({ ok: true, args: { op: 'request-ticket', n: 4, hierarchical: true, json: false } });
    expect(parseArgs(['sf-clone', 't-1', '--json'])).toEqual({ ok: true, args: { op: 'clone', ticket: 't-1', json: true } });
    expect(parseArgs(['t-1'], 'sf-join')).toEqual({ ok: true, args: { op: 'join', ticket: 't-1', json: false } });
    expect(parseArgs(['exit', '--channel', 'tcp://h:1', '--domid=5'])).toEqual({ ok: true, args: { op: 'exit', json: false, channel: 'tcp://h:1', domid: '5' } });
    expect(parseArgs(['request-ticket', '0'])).toMatchObject({ ok: true, args: { n: 0 } }); // the daemon refuses it, with its code
  });

  it.each([
    [[], /say which command/], [['frobnicate'], /unknown command/], [['clone'], /clone needs a TICKET/],
    [['request-ticket', 'four'], /needs a number N, got four/], [['join', 't-1', 'extra'], /unexpected argument extra/],
    [['clone', 't', '--hierarchical'], /belongs to request-ticket/], [['status', '--bogus'], /unknown option --bogus/],
    [['status', '--channel'], /--channel needs a value/],
  ])('%j is a usage error', (argv, message) => {
    expect(parseArgs(argv)).toMatchObject({ ok: false, help: false, error: expect.stringMatching(message) });
  });
});

function io(answer: (type: string, body: unknown) => Promise<unknown>) {
  const out: string[] = [];
  const err: string[] = [];
  const channel: GuestChannel = { closed: false, close: () => {}, request: answer as GuestChannel['request'] };
  return { out, err, io: { stdout: (s: string) => out.push(s), stderr: (s: string) => err.push(s), connect: async () => channel, env: {} } };
}

const report = (over: Partial<EndReport> = {}): EndReport => ({ ticket: 't-1', outcome: 'joined', clones: 2, destroyed: [1, 2], lost: [], unconfirmed: [], ...over });

describe('runCli', () => {
  it('prints just the answer on stdout', async () => {
    const t = io(async (type) => (type === 'request_ticket'
      ? { ticket: 't-9', requested: 4, granted: 3, hierarchical: false, expiresAt: 1, hosts: ['a', 'b', 'c'] }
      : { vmid: 2, clones: 3, hierarchical: false, vcpus: 1 }));
    expect(await runCli(['request-ticket', '4'], t.io)).toBe(Exit.ok);
    expect(await runCli(['clone', 't-9'], t.io)).toBe(Exit.ok);
    expect(t.out).toEqual(['t-9\n', '2\n']);
    expect(t.err.join('')).toMatch(/granted 3 of 4 clones/);
  });

  it('--json prints the daemon\'s whole answer, and errors as JSON', async () => {
    const t = io(async () => ({ vmid: 0, clones: 2, hierarchical: false, vcpus: 1 }));
    await runCli(['clone', 't-1', '--json'], t.io);
    expect(JSON.parse(t.out[0]!)).toEqual({ vmid: 0, clones: 2, hierarchical: false, vcpus: 1 });
    const r = io(async () => { throw new SfError('ticket-expired', 'ticket t-1 expired'); });
    expect(await runCli(['clone', 't-1', '--json'], r.io)).toBe(Exit.refused);
    expect(JSON.parse(r.out[0]!)).toEqual({ error: { code: 'ticket-expired', message: 'ticket t-1 expired' } });
  });

  it('exit codes: refused 1, usage 2, unreachable 3, incomplete join 4', async () => {
    const refused = io(async () => { throw new SfError('not-parent', 'a clone may only sf_exit'); });
    expect(await runCli(['join', 't-1'], refused.io)).toBe(1);
    expect(refused.err.join('')).toMatch(/join refused \(not-parent\): a clone may only sf_exit/);
    expect(await runCli(['nope'], refused.io)).toBe(2);
    const down = { ...refused.io, connect: async () => { throw new ChannelUnavailableError('cannot reach the host daemon at x:1'); } };
    expect(await runCli(['status'], down)).toBe(3);
    const noMaster = io(async () => { throw new SfError('master-unavailable', 'no link to the master'); });
    expect(await runCli(['request-ticket', '1'], noMaster.io)).toBe(3);
    const partial = io(async () => report({ destroyed: [1], lost: [{ vmid: 2, host: 'h2' }] }));
    expect(await runCli(['join', 't-1'], partial.io)).toBe(4);
    expect(partial.out.join('')).toMatch(/joined t-1: 2 clones, destroyed 1\nlost clone 2 on h2/);
    const whole = io(async () => report());
    expect(await runCli(['kill', 't-1'], whole.io)).toBe(0);
  });

  it('--help and a bad channel', async () => {
    const t = io(async () => ({}));
    expect(await runCli(['--help'], t.io)).toBe(0);
    expect(t.out.join('')).toMatch(/Exit codes: 0 ok, 1 refused or failed, 2 bad usage, 3/);
    const { connect: _c, ...noConnect } = t.io;
    expect(await runCli(['status', '--channel', 'carrier-pigeon'], noConnect)).toBe(2);
    expect(t.err.join('')).toMatch(/bad channel "carrier-pigeon"/);
  });
});
