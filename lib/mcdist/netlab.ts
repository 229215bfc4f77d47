/**
 * A throwaway network for the host tests and the benchmark: one namespace per
 * host, each with a veth into a Linux bridge that lives in its own hub
 * namespace, and a route for 224.0.0.0/4 so multicast has somewhere to go.
 * Nothing is added to the caller's namespace. Needs root and iproute2.
 *
 * Names carry a per-run prefix so parallel runs do not collide, and the
 * namespaces are removed on destroy() or, failing that, when the process exits.
 */
import { execFile, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { promisify } from 'node:util';

const run = promisify(execFile);

export interface LabHost {
  ns: string;
  address: string;
}

export interface Lab {
  prefix: string;
  hub: string;
  hosts: LabHost[];
  destroy(): Promise<void>;
}

export interface LabOptions {
  hosts: number;
  /** Default: "sfmc" + pid + random, unique per run. */
  prefix?: string;
  /** Add the 224.0.0.0/4 route in each host (default true; false to test the probe). */
  multicastRoute?: boolean;
  /** Link MTU (default 1500, so 4 KiB blocks travel as IP fragments, as on most LANs). */
  mtu?: number;
}

/** Hosts get 10.213.<i/250>.<i%250+1>/16; the addresses exist only inside the lab. */
function hostAddress(i: number): string {
  return `10.213.${Math.floor(i / 250)}.${(i % 250) + 1}`;
}

async function ip(...args: string[]): Promise<void> {
  await run('ip', args);
}

export async function createLab(opts: LabOptions): Promise<Lab> {
  const prefix = opts.prefix ?? `sfmc${process.pid.toString(36)}${randomBytes(2).toString('hex')}`;
  const hub = `${prefix}-hub`;
  const mtu = String(opts.mtu ?? 1500);
  const names = [hub];
  const remove = (): void => {
    for (const ns of names) {
      try {
        execFileSync('ip', ['netns', 'del', ns], { stdio: 'ignore' });
      } catch {
        // already gone
      }
    }
  };
  process.once('exit', remove);
  const lab: Lab = {
    prefix,
    hub,
    hosts: [],
    destroy: async () => {
      process.off('exit', remove);
      // Deleting a namespace deletes its end of each veth, and with it the peer.
      await Promise.all(names.map((ns) => ip('netns', 'del', ns).catch(() => undefined)));
    },
  };
  try {
    await ip('netns', 'add', hub);
    // No IGMP querier here, so snooping would only add ways to lose traffic.
    await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    await ip('-n', hub, 'link', 'set', 'br0', 'up');
    for (let i = 0; i < opts.hosts; i++) {
      const ns = `${prefix}-h${i}`;
      const address = hostAddress(i);
      names.push(ns);
      await ip('netns', 'add', ns);
      await ip('-n', hub, 'link', 'add', `v${i}`, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      await ip('-n', hub, 'link', 'set', `v${i}`, 'master', 'br0', 'mtu', mtu, 'up');
      await ip('-n', ns, 'link', 'set', 'eth0', 'mtu', mtu);
      await ip('-n', ns, 'addr', 'add', `${address}/16`, 'dev', 'eth0');
      await ip('-n', ns, 'link', 'set', 'eth0', 'up');
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      if (opts.multicastRoute !== false) await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', 'eth0');
      lab.hosts.push({ ns, address });
    }
  } catch (err) {
    await lab.destroy();
    throw err;
  }
  return lab;
}

/** Namespaces of this lab that still exist (tests check cleanup with it). */
export async function listNamespaces(prefix: string): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((l) => l.split(' ')[0] ?? '').filter((n) => n.startsWith(`${prefix}-`));
}
