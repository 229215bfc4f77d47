// The shell wrapper against live daemons: a script's whole family as real processes
// (T=$(sf request-ticket 2); sf clone $T; sf join $T), then refusals and their exit codes.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { runCli } from '../../../lib/api/cli-run.js';
import { clonesLeft, startLab, type Lab } from './harness.js';

const root = join(import.meta.dirname, '..', '..', '..');
const viteNode = join(root, 'node_modules', '.bin', 'vite-node');
const cli = join(root, 'lib', 'api', 'cli.ts');

let lab: Lab;
beforeAll(async () => { lab = await startLab(); });
afterAll(async () => { await lab.close(); });

/** Runs the real entry point in its own process (asynchronously: the daemons live in this one). */
function sf(domid: number, ...args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const p = spawn(viteNode, [cli, ...args], {
      env: { ...process.env, SNOWFLOCK_CHANNEL: `tcp://127.0.0.1:${lab.hosts.h1.port}`, SNOWFLOCK_DOMID: String(domid) },
    });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (d) => { stdout += d; });
    p.stderr.on('data', (d) => { stderr += d; });
    p.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** The same entry in-process, for the many refusal cases; a guest of h1 unless told. */
async function sfHere(domid: number | [host: 'h1' | 'h2', domid: number], ...args: string[]) {
  const [host, id] = typeof domid === 'number' ? ['h1' as const, domid] : domid;
  let stdout = '';
  let stderr = '';
  const code = await runCli(args, {
    stdout: (s) => { stdout += s; }, stderr: (s) => { stderr += s; },
    env: { SNOWFLOCK_CHANNEL: `tcp://127.0.0.1:${lab.hosts[host].port}`, SNOWFLOCK_DOMID: String(id) },
  });
  return { code, stdout, stderr };
}

describe('sf for shell scripts', () => {
  it('request-ticket, clone and join as separate processes', async () => {
    const t = await sf(7, 'request-ticket', '2');
    expect(t).toMatchObject({ code: 0, stderr: '' });
    const ticket = t.stdout.trim();
    expect(ticket).toMatch(/^t-[0-9a-f]{16}$/);
    const c = await sf(7, 'clone', ticket);
    expect(c).toMatchObject({ code: 0, stdout: '0\n' });
    expect((await lab.children()).map((k) => k.vmid).sort()).toEqual([1, 2]);
    const j = await sf(7, 'join', ticket);
    expect(j.code).toBe(0);
    expect(j.stdout).toMatch(/^joined t-[0-9a-f]{16}: 2 clones, destroyed [12] [12]\n$/);
    expect(clonesLeft(lab)).toBe(0);
  });

  it('refusals exit 1 with the code on stderr (or as JSON); a clone\'s join is refused', async () => {
    expect(await sfHere(7, 'request-ticket', '0')).toMatchObject({ code: 1, stderr: expect.stringMatching(/refused \(invalid-request\): n must be a positive integer, got 0/) });
    expect(await sfHere(7, 'request-ticket', '1.5')).toMatchObject({ code: 1, stderr: expect.stringMatching(/invalid-request/) });
    expect(await sfHere(7, 'exit')).toMatchObject({ code: 1, stderr: expect.stringMatching(/\(not-child\)/) });
    const ticket = (await sfHere(7, 'request-ticket', '1')).stdout.trim();
    let childJoin: Awaited<ReturnType<typeof sfHere>> | null = null;
    lab.childProgram = async (c) => {
      childJoin = await sfHere([c.host, c.domid], 'join', ticket, '--json');
      await c.client.exit();
    };
    expect((await sfHere(7, 'clone', ticket)).stdout).toBe('0\n');
    await lab.children();
    expect(childJoin).not.toBeNull();
    expect(JSON.parse(childJoin!.stdout)).toMatchObject({ error: { code: 'not-parent' } });
    expect(childJoin!.code).toBe(1);
    expect((await sfHere(7, 'join', ticket)).code).toBe(0);
    expect(await sfHere(7, 'join', ticket)).toMatchObject({ code: 1, stderr: expect.stringMatching(/ticket-released/) });
  });

  it('an unreachable daemon exits 3; a bad command line exits 2', async () => {
    const r = await runCli(['status'], { stdout: () => {}, stderr: () => {}, env: { SNOWFLOCK_CHANNEL: 'tcp://127.0.0.1:1' } });
    expect(r).toBe(3);
    expect((await sfHere(7, 'clone')).code).toBe(2);
  });
});
