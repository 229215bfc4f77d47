/**
 * Can this host take part in multicast distribution? The probe joins a random
 * group, sends one datagram to it with TTL 0 and waits for the loopback copy.
 * TTL 0 keeps the datagram on this host, so probing never puts traffic on the
 * network; the join's IGMP report is the only thing that leaves.
 *
 * What it proves: the kernel has a route for the group, the interface accepts
 * the membership and delivers group traffic to sockets. What it cannot prove:
 * that the switches between hosts forward the group (IGMP snooping without a
 * querier, cloud networks). For that the client watches for silence at run
 * time and falls back to TCP (see index.ts).
 */
import dgram from 'node:dgram';
import { randomBytes } from 'node:crypto';

export interface ProbeOptions {
  /** Local interface address to join on; the kernel picks one if unset. */
  interfaceAddress?: string;
  /** Group to probe (default: a random one in 239.255.0.0/16, the local scope). */
  group?: string;
  timeoutMs?: number;
}

export interface ProbeResult {
  available: boolean;
  reason?: string;
}

export async function probeMulticast(opts: ProbeOptions = {}): Promise<ProbeResult> {
  const r = randomBytes(2);
  const group = opts.group ?? `239.255.${r[0]!}.${Math.max(1, r[1]!)}`;
  const timeoutMs = opts.timeoutMs ?? 500;
  const token = randomBytes(16);
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  let timer: NodeJS.Timeout | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      socket.once('error', reject);
      socket.bind(0, () => {
        socket.off('error', reject);
        resolve();
      });
    });
    const port = socket.address().port;
    try {
      socket.addMembership(group, opts.interfaceAddress);
    } catch (err) {
      return { available: false, reason: `cannot join ${group}: ${describe(err)}` };
    }
    try {
      if (opts.interfaceAddress) socket.setMulticastInterface(opts.interfaceAddress);
      socket.setMulticastTTL(0);
      socket.setMulticastLoopback(true);
    } catch (err) {
      return { available: false, reason: `cannot set multicast options: ${describe(err)}` };
    }
    const received = new Promise<ProbeResult>((resolve) => {
      socket.on('message', (msg) => {
        if (msg.equals(token)) resolve({ available: true });
      });
      socket.on('error', (err) => resolve({ available: false, reason: `socket error: ${describe(err)}` }));
      timer = setTimeout(
        () => resolve({ available: false, reason: `no loopback delivery from ${group} within ${timeoutMs} ms` }),
        timeoutMs,
      );
    });
    const sent = new Promise<ProbeResult | undefined>((resolve) => {
      socket.send(token, port, group, (err) => {
        // ENETUNREACH here is the classic "no multicast route" case.
        resolve(err ? { available: false, reason: `cannot send to ${group}: ${describe(err)}` } : undefined);
      });
    });
    const sendError = await sent;
    return sendError ?? (await received);
  } catch (err) {
    return { available: false, reason: `cannot open a UDP socket: ${describe(err)}` };
  } finally {
    if (timer) clearTimeout(timer);
    closeQuietly(socket);
  }
}

function closeQuietly(socket: dgram.Socket): void {
  try {
    socket.close();
  } catch {
    // never bound, or already closed
  }
}

function describe(err: unknown): string {
  const e = err as NodeJS.ErrnoException;
  return e.code ? `${e.code} (${e.message})` : String(e?.message ?? err);
}
