/**
 * Runs one sf_* command for a shell script and returns the exit code. stdout carries only the
 * answer (a ticket id, a vmid, or JSON with --json), so `T=$(sf request-ticket 4)` and
 * `ID=$(sf clone $T)` work; messages go to stderr.
 */
import type { Connect } from './channel.js';
import { channelFromEnv, connectorFor, parseChannelSpec, parseDomid } from './channel-spec.js';
import { SfClient } from './client.js';
import { USAGE, parseArgs, type Parsed } from './cli-args.js';
import { SfError, toWireError } from '../daemon/errors.js';
import type { EndReport } from '../daemon/protocol.js';

export const Exit = { ok: 0, refused: 1, usage: 2, unreachable: 3, incomplete: 4 } as const;

export interface CliIo {
  stdout: (s: string) => void;
  stderr: (s: string) => void;
  env?: NodeJS.ProcessEnv;
  /** Overrides the channel (tests). */
  connect?: Connect;
  invokedAs?: string;
}

export async function runCli(argv: readonly string[], io: CliIo): Promise<number> {
  const parsed = parseArgs(argv, io.invokedAs);
  if (!parsed.ok) {
    if (parsed.help) {
      io.stdout(USAGE + '\n');
      return Exit.ok;
    }
    io.stderr(`sf: ${parsed.error}\n${USAGE}\n`);
    return Exit.usage;
  }
  const a = parsed.args;
  let connect: Connect;
  try {
    connect = io.connect ?? connectorFor(a.channel
      ? parseChannelSpec(a.channel, parseDomid(a.domid ?? io.env?.SNOWFLOCK_DOMID))
      : { ...channelFromEnv(io.env ?? process.env), ...(a.domid === undefined ? {} : { domid: parseDomid(a.domid) }) });
  } catch (e) {
    io.stderr(`sf: ${(e as Error).message}\n`);
    return Exit.usage;
  }
  const client = new SfClient(connect);
  try {
    return await run(client, a, io);
  } catch (e) {
    const w = toWireError(e);
    const unreachable = e instanceof SfError && (w.code === 'channel-closed' || w.code === 'master-unavailable');
    if (a.json) io.stdout(JSON.stringify({ error: w }) + '\n');
    else io.stderr(`sf: ${a.op} ${unreachable ? 'failed' : 'refused'} (${w.code}): ${w.message}\n`);
    return unreachable ? Exit.unreachable : Exit.refused;
  } finally {
    client.close();
  }
}

async function run(client: SfClient, a: Parsed, io: CliIo): Promise<number> {
  const out = (json: unknown, text: string) => io.stdout((a.json ? JSON.stringify(json) : text) + '\n');
  switch (a.op) {
    case 'request-ticket': {
      const t = await client.requestTicket(a.n!, { hierarchical: a.hierarchical ?? false });
      out(t, t.ticket);
      if (!a.json && t.granted < t.requested) io.stderr(`sf: granted ${t.granted} of ${t.requested} clones\n`);
      return Exit.ok;
    }
    case 'clone': {
      const r = await client.cloneDetailed(a.ticket!);
      out(r, String(r.vmid));
      return Exit.ok;
    }
    case 'exit': {
      await client.exit();
      if (a.json) out({ exited: true }, '');
      return Exit.ok;
    }
    case 'join':
    case 'kill': {
      const r = a.op === 'join' ? await client.join(a.ticket!) : await client.kill(a.ticket!);
      out(r, summary(r));
      return r.lost.length + r.unconfirmed.length + (r.died?.length ?? 0) > 0 ? Exit.incomplete : Exit.ok;
    }
    case 'status': {
      const s = await client.status();
      out(s, `${s.role} host=${s.host} domid=${s.domid}${s.family ? ` family=${s.family}` : ''}${s.vmid !== null ? ` vmid=${s.vmid}` : ''}`);
      return Exit.ok;
    }
    case 'hosts': {
      const h = await client.hosts();
      out(h, h.hosts.map((x) => `${x.name} ${x.connected ? 'up' : 'down'} vcpus=${x.vcpus} memoryMiB=${x.memoryMiB}`).join('\n'));
      return Exit.ok;
    }
    case 'list': {
      const l = await client.list();
      out(l, l.families.flatMap((f) => [
        `family ${f.family} (parent ${f.parent.host}/${f.parent.domid})`,
        ...f.tickets.map((t) => `  ticket ${t.ticket} ${t.state} granted=${t.granted}`),
        ...f.children.map((c) => `  clone ${c.vmid} of ${c.ticket} on ${c.host}/${c.domid ?? '-'} ${c.state}`),
      ]).join('\n'));
      return Exit.ok;
    }
  }
}

function summary(r: EndReport): string {
  const lines = [`${r.outcome} ${r.ticket}: ${r.clones} clones, destroyed ${r.destroyed.length ? r.destroyed.join(' ') : 'none'}`];
  for (const l of r.lost) lines.push(`lost clone ${l.vmid} on ${l.host} (its host dropped out; destroyed when it returns)`);
  for (const u of r.unconfirmed) lines.push(`unconfirmed clone ${u.vmid} on ${u.host}: ${u.reason}`);
  for (const d of r.died ?? []) lines.push(`clone ${d.vmid} on ${d.host} died before sf_exit (${d.reason})`);
  return lines.join('\n');
}
